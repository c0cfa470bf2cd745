# Step: unpack a tar archive that was uploaded into the user's home directory, then delete it.
# Uses tar.exe (bsdtar, shipped with Windows 10 and later). Prints {dir}.
param(
    [Parameter(Mandatory = $true)][string]$Archive,
    [Parameter(Mandatory = $true)][string]$Dir
)

$archivePath = Join-Path $HOME $Archive
try {
    New-Item -ItemType Directory -Force -Path $Dir | Out-Null
    & tar.exe -x -f $archivePath -C $Dir
    if ($LASTEXITCODE -ne 0) { throw "tar.exe -x failed with exit code $LASTEXITCODE" }
}
finally {
    Remove-Item -LiteralPath $archivePath -Force -ErrorAction SilentlyContinue
}
$global:LASTEXITCODE = 0
ConvertTo-Json -InputObject ([ordered]@{ dir = (Resolve-Path -LiteralPath $Dir).ProviderPath }) -Compress
