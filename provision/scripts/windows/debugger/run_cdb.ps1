# debugger/run_cdb.ps1: run cdb.exe non-interactively with a timeout that kills its process tree.
# $CommandLine is cdb's whole argument string (quoted by harness); $SymbolPath becomes
# _NT_SYMBOL_PATH. Prints one JSON object: {exit_code: int|null, timed_out: bool, output: string}.
param(
    [Parameter(Mandatory = $true)][string]$Cdb,
    [Parameter(Mandatory = $true)][string]$CommandLine,
    [Parameter(Mandatory = $true)][string]$Dir,
    [Parameter(Mandatory = $true)][string]$SymbolPath,
    [Parameter(Mandatory = $true)][int]$TimeoutSeconds
)
$ErrorActionPreference = 'Stop'

$env:_NT_SYMBOL_PATH = $SymbolPath
$stamp = [guid]::NewGuid().ToString('N')
$out = Join-Path $env:TEMP "harness-cdb-$stamp.out"
$err = Join-Path $env:TEMP "harness-cdb-$stamp.err"
$p = Start-Process -FilePath $Cdb -ArgumentList $CommandLine -WorkingDirectory $Dir `
    -RedirectStandardOutput $out -RedirectStandardError $err -NoNewWindow -PassThru
$null = $p.Handle
$timed_out = $false
if (-not $p.WaitForExit($TimeoutSeconds * 1000)) {
    $timed_out = $true
    & taskkill.exe /T /F /PID $p.Id 2>&1 | Out-Null
    $null = $p.WaitForExit(10000)
}
$code = $null
if ($p.HasExited) { $code = $p.ExitCode }
$text = ''
foreach ($f in @($out, $err)) {
    if (Test-Path -LiteralPath $f) {
        $part = Get-Content -LiteralPath $f -Raw
        if ($null -ne $part) { $text += $part }
        Remove-Item -LiteralPath $f -Force -ErrorAction SilentlyContinue
    }
}
$result = [ordered]@{
    exit_code = $code
    timed_out = $timed_out
    output    = $text
}
ConvertTo-Json -InputObject $result -Compress -Depth 4
