# install/uninstall.ps1: remove the installed efW runtime with the scripts of the build that installed it.
# Stops services and drivers first, runs the uninstaller in a child PowerShell (the reference
# scripts end with `exit 0` and import modules we must not keep), then reports which eBPF services
# remain, so the caller judges the result rather than trusting the exit code.
# Prints {dir, method, exit_code, output_tail[], services_after{}}; dir and method are null when
# neither directory holds an uninstaller.
param(
    [Parameter(Mandatory = $true)][string]$BuildDir,
    [Parameter(Mandatory = $true)][string]$FallbackDir,
    [Parameter(Mandatory = $true)][string]$LogName
)

function Get-ServiceStates {
    $states = [ordered]@{}
    foreach ($name in @('eBPFCore', 'NetEbpfExt', 'eBPFSvc', 'SampleEbpfExt')) {
        $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
        if ($null -eq $svc) { $states[$name] = $null } else { $states[$name] = [string]$svc.Status }
    }
    $states
}

function Find-Uninstaller([string]$Dir) {
    if (Test-Path -LiteralPath (Join-Path $Dir 'install_ebpf.psm1')) { return 'install-psm1' }
    if (Test-Path -LiteralPath (Join-Path $Dir 'setup-ebpf.ps1')) { return 'setup-ebpf' }
    return $null
}

$dir = $BuildDir
$method = Find-Uninstaller $dir
if ($null -eq $method) {
    $dir = $FallbackDir
    $method = Find-Uninstaller $dir
}
if ($null -eq $method) {
    # Nothing to uninstall with yet (e.g. the new build is not unpacked): the caller decides.
    ConvertTo-Json -InputObject ([ordered]@{ dir = $null; method = $null; exit_code = $null; output_tail = @(); services_after = (Get-ServiceStates) }) -Compress -Depth 4
    return
}

$old_pref = $ErrorActionPreference
$ErrorActionPreference = 'Continue'
try {
    if ($method -eq 'install-psm1') {
        $output = powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command {
            param($WorkDir, $Log)
            $ErrorActionPreference = 'Stop'
            Set-Location -LiteralPath $WorkDir
            Import-Module .\install_ebpf.psm1 -ArgumentList ($WorkDir, $Log) -Force
            Stop-eBPFServiceAndDrivers
            Uninstall-eBPFComponents
        } -args $dir, $LogName *>&1 | ForEach-Object { "$_" }
    } else {
        Push-Location -LiteralPath $dir
        try {
            $output = powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File .\setup-ebpf.ps1 -Uninstall 2>&1 | ForEach-Object { "$_" }
        } finally {
            Pop-Location
        }
    }
    $code = $LASTEXITCODE
} finally {
    $ErrorActionPreference = $old_pref
}

$lines = @($output)
$tail = @($lines | Select-Object -Last 40)
$result = [ordered]@{
    dir            = $dir
    method         = $method
    exit_code      = $code
    output_tail    = $tail
    services_after = (Get-ServiceStates)
}
ConvertTo-Json -InputObject $result -Compress -Depth 6
