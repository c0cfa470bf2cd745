# session/dump_hung.ps1: a command ran past its timeout. Before harness kills its process tree
# (rooted at Root), write a full memory dump of every Go test binary (*.test.exe) in the tree
# with the built-in comsvcs.dll MiniDump (nothing to download) into Dir.
# Prints one JSON object: {dumps: [{pid, name, path, bytes, error}]}.
param(
    [Parameter(Mandatory = $true)][int]$Root,
    [Parameter(Mandatory = $true)][string]$Dir
)
$ErrorActionPreference = 'Continue'

$all = @(Get-CimInstance -ClassName Win32_Process)
$tree = @{}
$tree[$Root] = $true
$grew = $true
while ($grew) {
    $grew = $false
    foreach ($p in $all) {
        $id = [int]$p.ProcessId
        if ($tree.ContainsKey([int]$p.ParentProcessId) -and -not $tree.ContainsKey($id)) {
            $tree[$id] = $true
            $grew = $true
        }
    }
}
New-Item -ItemType Directory -Force -Path $Dir | Out-Null
$comsvcs = Join-Path $env:SystemRoot 'System32\comsvcs.dll'
$dumps = @()
foreach ($p in $all) {
    $id = [int]$p.ProcessId
    if (-not $tree.ContainsKey($id)) { continue }
    if ($p.Name -notlike '*.test.exe') { continue }
    $stamp = (Get-Date).ToUniversalTime().ToString('yyyyMMddTHHmmssZ')
    # MiniDump splits its arguments on spaces: the path must have none.
    $path = Join-Path $Dir ('{0}-{1}-{2}.dmp' -f ($p.Name -replace '\s', '_'), $id, $stamp)
    $err = $null
    $bytes = 0
    try {
        $dumpArgs = @("$comsvcs,", 'MiniDump', [string]$id, $path, 'full')
        $proc = Start-Process -FilePath 'rundll32.exe' -ArgumentList $dumpArgs -PassThru -WindowStyle Hidden
        if (-not $proc.WaitForExit(120000)) {
            Stop-Process -Id $proc.Id -Force -ErrorAction SilentlyContinue
            $err = 'MiniDump did not finish within 120 s'
        }
    } catch {
        $err = $_.Exception.Message
    }
    if (Test-Path -LiteralPath $path -PathType Leaf) {
        $bytes = (Get-Item -LiteralPath $path).Length
    } elseif ($null -eq $err) {
        $err = 'MiniDump wrote no file (is the session elevated, with SeDebugPrivilege?)'
    }
    $dumps += [ordered]@{ pid = $id; name = $p.Name; path = $path; bytes = $bytes; error = $err }
}
ConvertTo-Json -InputObject ([ordered]@{ dumps = @($dumps) }) -Compress -Depth 4
