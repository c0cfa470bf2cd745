# install/ext_create.ps1: register an extension driver as a kernel service. The binary path is quoted, so a path with
# spaces stays one argument (ntosebpfext's own setup script breaks on that).
# Prints {exit_code, output[]}.
param(
    [Parameter(Mandatory = $true)][string]$Service,
    [Parameter(Mandatory = $true)][string]$Driver,
    [Parameter(Mandatory = $true)][string]$Start
)

if (-not (Test-Path -LiteralPath $Driver)) {
    throw "driver '$Driver' does not exist in the guest"
}
$old_pref = $ErrorActionPreference
$ErrorActionPreference = 'Continue'
try {
    $out = @(sc.exe create $Service type= kernel binPath= "`"$Driver`"" start= $Start 2>&1 | ForEach-Object { "$_" })
    $code = $LASTEXITCODE
} finally {
    $ErrorActionPreference = $old_pref
}
ConvertTo-Json -InputObject ([ordered]@{ exit_code = $code; output = $out }) -Compress
