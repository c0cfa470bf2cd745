# Step: sizes of every file under a directory, to verify a tree transfer.
# Prints {files: [[relative path with '/', size], ...]}.
param(
    [Parameter(Mandatory = $true)][string]$Dir
)

$root = (Resolve-Path -LiteralPath $Dir).ProviderPath.TrimEnd('\') + '\'
$files = New-Object System.Collections.Generic.List[object]
foreach ($f in Get-ChildItem -LiteralPath $Dir -Recurse -File -Force) {
    $rel = $f.FullName.Substring($root.Length).Replace('\', '/')
    $files.Add(@($rel, [int64]$f.Length))
}
ConvertTo-Json -InputObject ([ordered]@{ files = $files.ToArray() }) -Compress -Depth 4
