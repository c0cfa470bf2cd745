# Step: restart sshd so that new sessions see the new machine environment (PATH).
# The restart runs in a process created through WMI, outside this SSH session's job object, so
# it survives the session being torn down; it waits a moment so this reply can get out first.
# Prints {old_sshd_pid, restarter_pid}.
param(
    [int]$DelaySeconds = 2
)

$svc = Get-CimInstance -ClassName Win32_Service -Filter "Name='sshd'"
if ($null -eq $svc) { throw "the sshd service does not exist" }

$inner = "Start-Sleep -Seconds $DelaySeconds; Restart-Service -Name sshd -Force"
$commandLine = "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command `"$inner`""
$created = Invoke-CimMethod -ClassName Win32_Process -MethodName Create -Arguments @{ CommandLine = $commandLine }
if ($created.ReturnValue -ne 0) {
    throw "Win32_Process.Create returned $($created.ReturnValue)"
}

$result = [ordered]@{
    old_sshd_pid  = [int]$svc.ProcessId
    restarter_pid = [int]$created.ProcessId
}
ConvertTo-Json -InputObject $result -Compress
