# health/test_signing.ps1: is test signing on for the running boot entry? Runs `bcdedit /enum
# {current}` (an administrator's command) and hands its lines to harness, which reads the
# `testsigning` line (absent means off).
# Prints {exit_code, output[]}.
param()

$old_pref = $ErrorActionPreference
$ErrorActionPreference = 'Continue'
try {
    $output = & bcdedit.exe /enum '{current}' 2>&1 | ForEach-Object { "$_" }
    $code = $LASTEXITCODE
} finally {
    $ErrorActionPreference = $old_pref
}
ConvertTo-Json -InputObject ([ordered]@{ exit_code = $code; output = @($output) }) -Compress
