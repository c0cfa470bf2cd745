# debugger/find_cdb.ps1: where is cdb.exe (the Windows SDK's Debugging Tools)?
# Looks in the usual Windows Kits locations, then on PATH.
# Prints one JSON object: {path: string|null, searched: [string]}.
param()

$searched = @()
foreach ($root in @(${env:ProgramFiles(x86)}, $env:ProgramFiles)) {
    if ([string]::IsNullOrEmpty($root)) { continue }
    $searched += (Join-Path $root 'Windows Kits\10\Debuggers\x64\cdb.exe')
    $searched += (Join-Path $root 'Debugging Tools for Windows (x64)\cdb.exe')
}
$found = $null
foreach ($candidate in $searched) {
    if (Test-Path -LiteralPath $candidate -PathType Leaf) { $found = $candidate; break }
}
if ($null -eq $found) {
    $searched += 'PATH'
    $cmd = Get-Command -Name 'cdb.exe' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($null -ne $cmd) { $found = $cmd.Source }
}
$result = [ordered]@{
    path     = $found
    searched = $searched
}
ConvertTo-Json -InputObject $result -Compress -Depth 4
