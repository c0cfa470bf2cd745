# health/path.ps1: is efW's install directory on the machine PATH, and does this session (a new SSH
# session, like the ones ebpf-go's tests run in) have it and resolve ebpfapi.dll through it?
# Prints {machine_path, session_path, ebpfapi_dll, dir_has_dll}.
param(
    [Parameter(Mandatory = $true)][string]$Dir
)

$machine = [string][Environment]::GetEnvironmentVariable('Path', 'Machine')
$found = $null
foreach ($entry in @($env:PATH -split ';' | Where-Object { $_ -ne '' })) {
    try {
        $candidate = Join-Path $entry.Trim('"') 'ebpfapi.dll'
        if (Test-Path -LiteralPath $candidate) {
            $found = $candidate
            break
        }
    } catch {
        # An entry with characters a path cannot hold: the loader skips it too.
        continue
    }
}

$result = [ordered]@{
    machine_path = $machine
    session_path = [string]$env:PATH
    ebpfapi_dll  = $found
    dir_has_dll  = (Test-Path -LiteralPath (Join-Path $Dir 'ebpfapi.dll'))
}
ConvertTo-Json -InputObject $result -Compress
