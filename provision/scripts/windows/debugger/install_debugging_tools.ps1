# debugger/install_debugging_tools.ps1: install the Windows SDK's Debugging Tools (cdb.exe) silently
# from an installer harness uploaded: the SDK setup (winsdksetup.exe, only the debuggers feature)
# or the Debugging Tools MSI. Prints one JSON object: {exit_code, cdb}; exits 1 with {error}
# when cdb.exe is not there afterwards.
param(
    [Parameter(Mandatory = $true)][string]$Installer
)
$ErrorActionPreference = 'Stop'

if ($Installer -like '*.msi') {
    $p = Start-Process -FilePath 'msiexec.exe' -ArgumentList @('/i', "`"$Installer`"", '/quiet', '/norestart') -Wait -PassThru
} else {
    $p = Start-Process -FilePath $Installer -ArgumentList @('/features', 'OptionId.WindowsDesktopDebuggers', '/quiet', '/norestart') -Wait -PassThru
}
$cdb = $null
foreach ($root in @(${env:ProgramFiles(x86)}, $env:ProgramFiles)) {
    if ([string]::IsNullOrEmpty($root)) { continue }
    $candidate = Join-Path $root 'Windows Kits\10\Debuggers\x64\cdb.exe'
    if (Test-Path -LiteralPath $candidate -PathType Leaf) { $cdb = $candidate; break }
}
$result = [ordered]@{
    exit_code = $p.ExitCode
    cdb       = $cdb
}
if ($null -eq $cdb) {
    $result['error'] = "the installer $Installer exited with $($p.ExitCode) and cdb.exe is not under Windows Kits\10\Debuggers\x64"
    ConvertTo-Json -InputObject $result -Compress
    exit 1
}
ConvertTo-Json -InputObject $result -Compress
