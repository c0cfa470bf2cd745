# install/query.ps1: what efW runtime is installed? Reads harness's marker file and the eBPF services.
# Prints one JSON object: {marker, services{name: status|null}, program_files}.
param(
    [Parameter(Mandatory = $true)][string]$Marker,
    [Parameter(Mandatory = $true)][string]$InstallDir
)

$marker_value = $null
if (Test-Path -LiteralPath $Marker) {
    $marker_value = Get-Content -LiteralPath $Marker -Raw | ConvertFrom-Json
}

$services = [ordered]@{}
foreach ($name in @('eBPFCore', 'NetEbpfExt', 'eBPFSvc')) {
    $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
    if ($null -eq $svc) { $services[$name] = $null } else { $services[$name] = [string]$svc.Status }
}

$result = [ordered]@{
    marker        = $marker_value
    services      = $services
    program_files = (Test-Path -LiteralPath $InstallDir)
}
ConvertTo-Json -InputObject $result -Compress -Depth 8
