# install/ensure_path.ps1: make sure the efW install directory is on the machine PATH (the MSI appends it, but a
# failed or partial install may not have). New sessions see it only after sshd restarts.
# Prints {changed, machine_path}.
param(
    [Parameter(Mandatory = $true)][string]$Dir
)

# Read and write the registry value itself: [Environment]::SetEnvironmentVariable would turn the
# REG_EXPAND_SZ value into REG_SZ and break every %SystemRoot%-style entry.
$key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SYSTEM\CurrentControlSet\Control\Session Manager\Environment', $true)
try {
    $current = [string]$key.GetValue('Path', '', [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames)
    $entries = @($current -split ';' | Where-Object { $_ -ne '' })
    $wanted = $Dir.TrimEnd('\')
    $present = $false
    foreach ($entry in $entries) {
        if ($entry.TrimEnd('\') -ieq $wanted) { $present = $true }
    }
    $changed = $false
    if (-not $present) {
        $updated = (@($entries) + $wanted) -join ';'
        $key.SetValue('Path', $updated, [Microsoft.Win32.RegistryValueKind]::ExpandString)
        $current = $updated
        $changed = $true
    }
} finally {
    $key.Close()
}
ConvertTo-Json -InputObject ([ordered]@{ changed = $changed; machine_path = $current }) -Compress
