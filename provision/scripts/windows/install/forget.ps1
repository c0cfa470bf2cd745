# install/forget.ps1: drop harness's install record (after an uninstall, before a new install), so an install
# that fails half way is never mistaken for the old build still being there.
# Prints {removed}.
param(
    [Parameter(Mandatory = $true)][string]$Marker
)

$removed = $false
if (Test-Path -LiteralPath $Marker) {
    Remove-Item -LiteralPath $Marker -Force
    $removed = $true
}
ConvertTo-Json -InputObject ([ordered]@{ removed = $removed }) -Compress
