# install/ext_start.ps1: start an extension's kernel service and wait for Running, retrying a bounded number of
# times (a driver can need a moment after eBPFCore, and `sc.exe start` can fail transiently).
# Prints {status, attempts, last_exit_code, output[]}.
param(
    [Parameter(Mandatory = $true)][string]$Service,
    [Parameter(Mandatory = $true)][int]$Attempts,
    [Parameter(Mandatory = $true)][int]$DelayMilliseconds
)

$status = $null
$last_code = $null
$out = @()
for ($i = 1; $i -le $Attempts; $i++) {
    $svc = Get-Service -Name $Service -ErrorAction SilentlyContinue
    if ($null -eq $svc) { throw "service '$Service' does not exist" }
    $status = [string]$svc.Status
    if ($status -eq 'Running') { break }
    if ($status -eq 'Stopped') {
        $old_pref = $ErrorActionPreference
        $ErrorActionPreference = 'Continue'
        try {
            $out += @(sc.exe start $Service 2>&1 | ForEach-Object { "$_" })
            $last_code = $LASTEXITCODE
        } finally {
            $ErrorActionPreference = $old_pref
        }
    }
    Start-Sleep -Milliseconds $DelayMilliseconds
    $status = [string](Get-Service -Name $Service).Status
    if ($status -eq 'Running') { break }
}
$result = [ordered]@{
    status         = $status
    attempts       = [Math]::Min($i, $Attempts)
    last_exit_code = $last_code
    output         = @($out | Select-Object -Last 20)
}
ConvertTo-Json -InputObject $result -Compress
