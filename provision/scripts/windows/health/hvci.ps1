# health/hvci.ps1: is Memory Integrity (HVCI) on? efW turns its JIT off under HVCI, and ebpf-go's
# tests need the JIT. Reads the policy (the registry value Enabled of
# Scenarios\HypervisorEnforcedCodeIntegrity, effective from the next boot) and what runs now
# (Win32_DeviceGuard SecurityServicesRunning, where 2 is HVCI).
# Prints {registry_enabled, services_running[], services_configured[], device_guard_error}.
param()

$key = 'HKLM:\SYSTEM\CurrentControlSet\Control\DeviceGuard\Scenarios\HypervisorEnforcedCodeIntegrity'
$enabled = $null
$value = Get-ItemProperty -LiteralPath $key -Name Enabled -ErrorAction SilentlyContinue
if ($null -ne $value) {
    $enabled = [int]$value.Enabled
}

$running = @()
$configured = @()
$dg_error = $null
try {
    $dg = Get-CimInstance -ClassName Win32_DeviceGuard -Namespace 'root\Microsoft\Windows\DeviceGuard'
    # foreach, not a pipeline: piping $null into ForEach-Object runs its block once.
    $running = @(foreach ($s in @($dg.SecurityServicesRunning)) { if ($null -ne $s) { [int]$s } })
    $configured = @(foreach ($s in @($dg.SecurityServicesConfigured)) { if ($null -ne $s) { [int]$s } })
} catch {
    $dg_error = $_.Exception.Message
}

$result = [ordered]@{
    registry_enabled    = $enabled
    services_running    = $running
    services_configured = $configured
    device_guard_error  = $dg_error
}
ConvertTo-Json -InputObject $result -Compress
