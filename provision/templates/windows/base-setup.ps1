# harness: base setup of a fresh Windows install before it is frozen as the golden image.
# PsExec64 goes where eBPF for Windows' installer looks for it; an optional Go toolchain is unpacked.
param(
    [string]$PsExec = '',
    [string]$GoZip = ''
)
$ErrorActionPreference = 'Stop'
$result = @{ psexec = $false; go = $false }

if ($PsExec -ne '') {
    $dest = 'C:\Windows\System32\PsExec64.exe'
    Copy-Item -Path $PsExec -Destination $dest -Force
    $result.psexec = Test-Path $dest
}

if ($GoZip -ne '') {
    Expand-Archive -Path $GoZip -DestinationPath 'C:\' -Force
    $machinePath = [Environment]::GetEnvironmentVariable('Path', 'Machine')
    if ($machinePath -notlike '*C:\go\bin*') {
        [Environment]::SetEnvironmentVariable('Path', "$machinePath;C:\go\bin", 'Machine')
    }
    $result.go = Test-Path 'C:\go\bin\go.exe'
}

# Nothing in the golden image should wait for a reboot or a user.
Remove-Item -Path 'C:\dumps\*' -Force -Recurse -ErrorAction SilentlyContinue
$result | ConvertTo-Json -Compress
