# harness: first-logon setup of the OpenSSH server in a fresh Windows test VM.
# Run from autounattend.xml's FirstLogonCommands with the answer media's authorized_keys file.
param(
    [Parameter(Mandatory = $true)][string]$KeyFile
)
$ErrorActionPreference = 'Stop'
Start-Transcript -Path 'C:\harness-setup-openssh.log' -Append | Out-Null

# The capability ships on the install media's Features on Demand or comes from Windows Update.
$cap = Get-WindowsCapability -Online -Name 'OpenSSH.Server*' | Select-Object -First 1
if ($cap.State -ne 'Installed') {
    Add-WindowsCapability -Online -Name $cap.Name | Out-Null
}

Set-Service -Name sshd -StartupType Automatic
New-Item -Path 'HKLM:\SOFTWARE\OpenSSH' -Force | Out-Null
New-ItemProperty -Path 'HKLM:\SOFTWARE\OpenSSH' -Name DefaultShell `
    -Value 'C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe' -PropertyType String -Force | Out-Null

# Administrators use administrators_authorized_keys, readable only by SYSTEM and Administrators,
# or sshd ignores it.
$sshDir = Join-Path $env:ProgramData 'ssh'
New-Item -ItemType Directory -Path $sshDir -Force | Out-Null
$authorized = Join-Path $sshDir 'administrators_authorized_keys'
Copy-Item -Path $KeyFile -Destination $authorized -Force
icacls.exe $authorized /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F' | Out-Null

if (-not (Get-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -ErrorAction SilentlyContinue)) {
    New-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -DisplayName 'OpenSSH Server (sshd)' `
        -Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort 22 | Out-Null
}

Set-MpPreference -DisableRealtimeMonitoring $true -ErrorAction SilentlyContinue
Start-Service sshd
Stop-Transcript | Out-Null
