# install/install.ps1: install the efW runtime from an unpacked build, by the chosen method.
# `setup-ebpf`: setup-ebpf.ps1 (as ebpf-go's docs say). `install-psm1`: install_ebpf.psm1 →
# Install-eBPFComponents -KmTracing $false -KmTraceType file -TestMode Normal (as ebpf-go's CI does).
# Both run in a child PowerShell; the reference scripts `exit 0` even when parts failed, so this
# step also reports what is really there (services, ebpfapi.dll, the MSI log) for the caller to judge.
# Prints {method, exit_code, output_tail[], services{}, ebpfapi_dll, psexec_present, msi_log}.
param(
    [Parameter(Mandatory = $true)][string]$BuildDir,
    [Parameter(Mandatory = $true)][string]$Method,
    [Parameter(Mandatory = $true)][string]$LogName,
    [Parameter(Mandatory = $true)][string]$InstallDir
)

if ($BuildDir -match '\s') {
    throw "build directory '$BuildDir' contains whitespace; install_ebpf.psm1 breaks on such paths"
}
$psexec_present = Test-Path -LiteralPath (Join-Path $BuildDir 'PsExec64.exe')

$old_pref = $ErrorActionPreference
$ErrorActionPreference = 'Continue'
try {
    switch ($Method) {
        'install-psm1' {
            $output = powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command {
                param($WorkDir, $Log)
                $ErrorActionPreference = 'Stop'
                Set-Location -LiteralPath $WorkDir
                Import-Module .\install_ebpf.psm1 -ArgumentList ($WorkDir, $Log) -Force
                Get-PSExec
                Install-eBPFComponents -KmTracing $false -KmTraceType 'file' -TestMode 'Normal'
            } -args $BuildDir, $LogName *>&1 | ForEach-Object { "$_" }
        }
        'setup-ebpf' {
            Push-Location -LiteralPath $BuildDir
            try {
                $output = powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File .\setup-ebpf.ps1 2>&1 | ForEach-Object { "$_" }
            } finally {
                Pop-Location
            }
        }
        default {
            throw "unknown install method '$Method' (expected setup-ebpf or install-psm1)"
        }
    }
    $code = $LASTEXITCODE
} finally {
    $ErrorActionPreference = $old_pref
}

$services = [ordered]@{}
foreach ($name in @('eBPFCore', 'NetEbpfExt')) {
    $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
    if ($null -eq $svc) { $services[$name] = $null } else { $services[$name] = [string]$svc.Status }
}
$dll = Join-Path $InstallDir 'ebpfapi.dll'
$msi_log = Join-Path $BuildDir 'msi-install.log'

$result = [ordered]@{
    method         = $Method
    exit_code      = $code
    output_tail    = @(@($output) | Select-Object -Last 40)
    services       = $services
    ebpfapi_dll    = $(if (Test-Path -LiteralPath $dll) { $dll } else { $null })
    psexec_present = $psexec_present
    msi_log        = $(if (Test-Path -LiteralPath $msi_log) { $msi_log } else { $null })
}
ConvertTo-Json -InputObject $result -Compress -Depth 6
