# Step: reboot the guest after a short delay (so this reply gets out). Prints {boot_id}.
param(
    [int]$DelaySeconds = 3
)

$os = Get-CimInstance -ClassName Win32_OperatingSystem
& shutdown.exe /r /f /t $DelaySeconds /c "harness reboot" /d p:4:1
if ($LASTEXITCODE -ne 0) { throw "shutdown.exe failed with exit code $LASTEXITCODE" }
$global:LASTEXITCODE = 0

ConvertTo-Json -InputObject ([ordered]@{ boot_id = $os.LastBootUpTime.ToUniversalTime().ToString('o') }) -Compress
