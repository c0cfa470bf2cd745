# install/prepare_dir.ps1: give a build an empty directory to be unpacked into (a path without spaces).
# Prints {path, removed}.
param(
    [Parameter(Mandatory = $true)][string]$Path
)

if ($Path -match '\s') {
    throw "build directory '$Path' contains whitespace; install_ebpf.psm1 breaks on such paths"
}
$removed = $false
if (Test-Path -LiteralPath $Path) {
    Remove-Item -LiteralPath $Path -Recurse -Force
    $removed = $true
}
New-Item -ItemType Directory -Path $Path -Force | Out-Null
ConvertTo-Json -InputObject ([ordered]@{ path = $Path; removed = $removed }) -Compress
