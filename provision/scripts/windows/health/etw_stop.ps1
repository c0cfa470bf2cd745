# health/etw_stop.ps1: stop ETW trace sessions by name (`logman stop <name> -ets`), one name per
# line of -Names, and report each.
# Prints {stopped: [{name, exit_code, output[]}]}.
param(
    [Parameter(Mandatory = $true)][string]$Names
)

$results = @()
foreach ($name in @($Names -split "`n" | ForEach-Object { $_.Trim() } | Where-Object { $_ -ne '' })) {
    $old_pref = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        $output = & logman.exe stop $name -ets 2>&1 | ForEach-Object { "$_" }
        $code = $LASTEXITCODE
    } finally {
        $ErrorActionPreference = $old_pref
    }
    $results += [ordered]@{ name = $name; exit_code = $code; output = @($output) }
}
ConvertTo-Json -InputObject ([ordered]@{ stopped = $results }) -Compress -Depth 4
