# Step: is a guest path a directory, a file, or missing? Prints {kind}.
param(
    [Parameter(Mandatory = $true)][string]$Path
)

$kind = 'missing'
if (Test-Path -LiteralPath $Path -PathType Container) { $kind = 'dir' }
elseif (Test-Path -LiteralPath $Path -PathType Leaf) { $kind = 'file' }
ConvertTo-Json -InputObject ([ordered]@{ kind = $kind }) -Compress
