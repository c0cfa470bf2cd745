# install/list_logs.ps1: name the install logs worth keeping: %TEMP%\*.log (install_ebpf.psm1's Write-Log target)
# and the MSI logs written in the build directory. The caller downloads them.
# Prints {files: [{path, size}]}.
param(
    [Parameter(Mandatory = $true)][string]$BuildDir
)

$files = @()
$candidates = @()
$candidates += @(Get-ChildItem -Path (Join-Path $env:TEMP '*.log') -File -ErrorAction SilentlyContinue)
foreach ($name in @('msi-install.log', 'msi-uninstall.log')) {
    $p = Join-Path $BuildDir $name
    if (Test-Path -LiteralPath $p) { $candidates += @(Get-Item -LiteralPath $p) }
}
foreach ($f in $candidates) {
    $files += [ordered]@{ path = $f.FullName; size = $f.Length }
}
ConvertTo-Json -InputObject ([ordered]@{ files = $files }) -Compress -Depth 4
