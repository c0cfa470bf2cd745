# Step: who is answering? Prints {boot_id, sshd_pid, path} so harness can tell a restarted sshd
# (new service process id) or a rebooted guest (new boot time) from the old one.
param()

$os = Get-CimInstance -ClassName Win32_OperatingSystem
$svc = Get-CimInstance -ClassName Win32_Service -Filter "Name='sshd'"
$sshdPid = $null
if ($null -ne $svc) { $sshdPid = [int]$svc.ProcessId }

$result = [ordered]@{
    boot_id  = $os.LastBootUpTime.ToUniversalTime().ToString('o')
    sshd_pid = $sshdPid
    path     = $env:Path
}
ConvertTo-Json -InputObject $result -Compress
