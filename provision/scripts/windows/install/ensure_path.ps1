# install/ensure_path.ps1: make sure the efW install directory is on the machine PATH (the MSI appends it, but a
# failed or partial install may not have). New sessions see it only after sshd restarts.
# Prints {changed, machine_path}.
param(
    [Parameter(Mandatory = $true)][string]$Dir
)

$current = [Environment]::GetEnvironmentVariable('Path', 'Machine')
$entries = @($current -split ';' | Where-Object { $_ -ne '' })
$wanted = $Dir.TrimEnd('\')
$present = $false
foreach ($entry in $entries) {
    if ($entry.TrimEnd('\') -ieq $wanted) { $present = $true }
}
$changed = $false
if (-not $present) {
    $updated = (@($entries) + $wanted) -join ';'
    [Environment]::SetEnvironmentVariable('Path', $updated, 'Machine')
    $current = $updated
    $changed = $true
}
ConvertTo-Json -InputObject ([ordered]@{ changed = $changed; machine_path = $current }) -Compress
