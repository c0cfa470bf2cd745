# forensics/list_dumps.ps1: which crash dumps appeared in the guest since Since (UTC, ISO 8601)?
# Looks at the kernel dump (%SystemRoot%\MEMORY.DMP), the minidumps (%SystemRoot%\Minidump),
# and the user-mode dumps WER LocalDumps writes to Dir (C:\dumps in the golden image, which also
# holds the dumps of timed-out test binaries); reads the bugcheck of the last crash from the
# System log (event 1001, "The computer has rebooted from a bugcheck").
# Prints one JSON object: {dumps: [{path, bytes, modified, kind}], bugcheck: string|null}.
param(
    [Parameter(Mandatory = $true)][string]$Since,
    [Parameter(Mandatory = $true)][string]$Dir
)
$ErrorActionPreference = 'Continue'

$after = [DateTime]::Parse($Since, [Globalization.CultureInfo]::InvariantCulture, [Globalization.DateTimeStyles]::AdjustToUniversal)
$found = @()
$candidates = @(
    @{ kind = 'kernel'; items = @(Get-Item -LiteralPath (Join-Path $env:SystemRoot 'MEMORY.DMP') -ErrorAction SilentlyContinue) },
    @{ kind = 'minidump'; items = @(Get-ChildItem -LiteralPath (Join-Path $env:SystemRoot 'Minidump') -File -ErrorAction SilentlyContinue) },
    @{ kind = 'user'; items = @(Get-ChildItem -LiteralPath $Dir -File -Recurse -ErrorAction SilentlyContinue) }
)
foreach ($c in $candidates) {
    foreach ($f in $c.items) {
        if ($null -eq $f) { continue }
        if ($f.LastWriteTimeUtc -le $after) { continue }
        $found += [ordered]@{
            path     = $f.FullName
            bytes    = $f.Length
            modified = $f.LastWriteTimeUtc.ToString('o')
            kind     = $c.kind
        }
    }
}

$bugcheck = $null
$events = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; Id = 1001; StartTime = $after.ToLocalTime() } -MaxEvents 20 -ErrorAction SilentlyContinue)
foreach ($e in $events) {
    if ($e.Message -match 'bugcheck was:\s*(0x[0-9a-fA-F]+\s*\([^)]*\))') {
        $bugcheck = $Matches[1]
        break
    }
}

$result = [ordered]@{
    dumps    = @($found)
    bugcheck = $bugcheck
}
ConvertTo-Json -InputObject $result -Compress -Depth 4
