# health/build.ps1: which Windows the guest runs, for the results' provenance (CurrentBuild.UBR,
# e.g. 26100.2605).
# Prints {product_name, display_version, current_build, ubr}.
param()

$cv = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion'
$ubr = $null
if ($null -ne $cv.UBR) {
    $ubr = [int64]$cv.UBR
}
$result = [ordered]@{
    product_name    = [string]$cv.ProductName
    display_version = [string]$cv.DisplayVersion
    current_build   = [string]$cv.CurrentBuild
    ubr             = $ubr
}
ConvertTo-Json -InputObject $result -Compress
