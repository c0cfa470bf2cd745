# install/record.ps1: record what harness installed, so later runs can tell "same build, nothing to do" and
# suites can set CI_EFW_VERSION. The record is JSON produced by harness and passed through as is.
# Prints {written}.
param(
    [Parameter(Mandatory = $true)][string]$Marker,
    [Parameter(Mandatory = $true)][string]$Record
)

$null = $Record | ConvertFrom-Json
$parent = Split-Path -Parent $Marker
if (-not (Test-Path -LiteralPath $parent)) {
    New-Item -ItemType Directory -Path $parent -Force | Out-Null
}
[System.IO.File]::WriteAllText($Marker, $Record, (New-Object System.Text.UTF8Encoding($false)))
ConvertTo-Json -InputObject ([ordered]@{ written = $Marker }) -Compress
