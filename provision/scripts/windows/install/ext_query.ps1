# install/ext_query.ps1: state of an extension's kernel service and of eBPFCore, which it needs.
# Prints {service, status|null, binary_path|null, ebpfcore|null}.
param(
    [Parameter(Mandatory = $true)][string]$Service
)

function Get-State([string]$Name) {
    $svc = Get-Service -Name $Name -ErrorAction SilentlyContinue
    if ($null -eq $svc) { return $null }
    return [string]$svc.Status
}

$binary = $null
$key = "HKLM:\SYSTEM\CurrentControlSet\Services\$Service"
if (Test-Path -LiteralPath $key) {
    $binary = (Get-ItemProperty -LiteralPath $key -Name ImagePath -ErrorAction SilentlyContinue).ImagePath
}
$result = [ordered]@{
    service     = $Service
    status      = (Get-State $Service)
    binary_path = $binary
    ebpfcore    = (Get-State 'eBPFCore')
}
ConvertTo-Json -InputObject $result -Compress
