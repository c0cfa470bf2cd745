# install/ext_export.ps1: run an extension's export tool, which writes (or with --clear removes) its program and
# section information in the eBPF store under HKLM\Software\eBPF.
# Prints {exit_code, output[]}.
param(
    [Parameter(Mandatory = $true)][string]$Tool,
    [Parameter(Mandatory = $true)][string]$Clear
)

if (-not (Test-Path -LiteralPath $Tool)) {
    throw "export tool '$Tool' does not exist in the guest"
}
$old_pref = $ErrorActionPreference
$ErrorActionPreference = 'Continue'
try {
    if ($Clear -eq 'true') {
        $out = @(& $Tool --clear 2>&1 | ForEach-Object { "$_" })
    } else {
        $out = @(& $Tool 2>&1 | ForEach-Object { "$_" })
    }
    $code = $LASTEXITCODE
} finally {
    $ErrorActionPreference = $old_pref
}
ConvertTo-Json -InputObject ([ordered]@{ exit_code = $code; output = $out }) -Compress
