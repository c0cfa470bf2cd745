# health/services.ps1: the eBPF services and their status: eBPFCore and NetEbpfExt (kernel), and
# eBPFSvc (the JIT service, installed only by builds that have the JIT).
# Prints {services{name: status | null}}.
param()

$services = [ordered]@{}
foreach ($name in @('eBPFCore', 'NetEbpfExt', 'eBPFSvc')) {
    $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
    if ($null -eq $svc) {
        $services[$name] = $null
    } else {
        $services[$name] = [string]$svc.Status
    }
}
ConvertTo-Json -InputObject ([ordered]@{ services = $services }) -Compress -Depth 4
