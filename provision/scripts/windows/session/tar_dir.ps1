# Step: pack a directory into a tar archive in the user's home directory (for download over
# SFTP), or delete that archive again with -Remove yes. Prints {archive, bytes}.
param(
    [Parameter(Mandatory = $true)][string]$Archive,
    [string]$Dir = '',
    [string]$Remove = 'no'
)

$archivePath = Join-Path $HOME $Archive
if ($Remove -eq 'yes') {
    Remove-Item -LiteralPath $archivePath -Force -ErrorAction SilentlyContinue
    ConvertTo-Json -InputObject ([ordered]@{ archive = $archivePath; bytes = 0 }) -Compress
    exit 0
}
if (-not (Test-Path -LiteralPath $Dir -PathType Container)) { throw "no such directory: $Dir" }
& tar.exe -c -f $archivePath -C $Dir .
if ($LASTEXITCODE -ne 0) { throw "tar.exe -c failed with exit code $LASTEXITCODE" }
$global:LASTEXITCODE = 0
$bytes = (Get-Item -LiteralPath $archivePath).Length
ConvertTo-Json -InputObject ([ordered]@{ archive = $archivePath; bytes = $bytes }) -Compress
