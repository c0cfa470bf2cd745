# install/ext_remove.ps1: remove an extension's kernel service if it exists: stop it, `sc.exe delete`, and wait until
# Windows has really forgotten it (deletion is asynchronous while handles are open).
# Prints {existed, stop_exit_code, delete_exit_code, output[], gone}.
param(
    [Parameter(Mandatory = $true)][string]$Service,
    [Parameter(Mandatory = $true)][int]$WaitSeconds
)

$svc = Get-Service -Name $Service -ErrorAction SilentlyContinue
$result = [ordered]@{
    existed          = ($null -ne $svc)
    stop_exit_code   = $null
    delete_exit_code = $null
    output           = @()
    gone             = ($null -eq $svc)
}
if ($null -ne $svc) {
    $old_pref = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        $out = @()
        if ([string]$svc.Status -ne 'Stopped') {
            $out += @(sc.exe stop $Service 2>&1 | ForEach-Object { "$_" })
            $result.stop_exit_code = $LASTEXITCODE
        }
        $out += @(sc.exe delete $Service 2>&1 | ForEach-Object { "$_" })
        $result.delete_exit_code = $LASTEXITCODE
        $result.output = $out
    } finally {
        $ErrorActionPreference = $old_pref
    }
    $deadline = (Get-Date).AddSeconds($WaitSeconds)
    while ((Get-Date) -lt $deadline) {
        if ($null -eq (Get-Service -Name $Service -ErrorAction SilentlyContinue)) { break }
        Start-Sleep -Milliseconds 500
    }
    $result.gone = ($null -eq (Get-Service -Name $Service -ErrorAction SilentlyContinue))
}
ConvertTo-Json -InputObject $result -Compress
