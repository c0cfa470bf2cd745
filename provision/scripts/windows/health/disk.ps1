# health/disk.ps1: free space on the system drive, where test binaries, ETW traces and crash dumps
# go.
# Prints {drive, free_bytes, size_bytes} (the sizes null when the drive cannot be read).
param()

$drive = [string]$env:SystemDrive
$free = $null
$size = $null
$disk = Get-CimInstance -ClassName Win32_LogicalDisk -Filter "DeviceID='$drive'" -ErrorAction SilentlyContinue
if ($null -ne $disk) {
    $free = [int64]$disk.FreeSpace
    $size = [int64]$disk.Size
}
ConvertTo-Json -InputObject ([ordered]@{ drive = $drive; free_bytes = $free; size_bytes = $size }) -Compress
