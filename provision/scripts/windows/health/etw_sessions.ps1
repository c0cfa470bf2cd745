# health/etw_sessions.ps1: the running ETW trace sessions as `logman query -ets` lists them; harness
# picks out the ones crashed ebpf-go test runs left behind (`epbf-go-<pid>`, `ebpf-go-<pid>`).
# Prints {exit_code, output[]}.
param()

$old_pref = $ErrorActionPreference
$ErrorActionPreference = 'Continue'
try {
    $output = & logman.exe query -ets 2>&1 | ForEach-Object { "$_" }
    $code = $LASTEXITCODE
} finally {
    $ErrorActionPreference = $old_pref
}
ConvertTo-Json -InputObject ([ordered]@{ exit_code = $code; output = @($output) }) -Compress
