# install/verify.ps1: check, from a fresh session, that the runtime is usable the way ebpf-go uses it:
# services running, ebpfapi.dll found through this session's PATH (the normal DLL search that
# windows.NewLazyDLL relies on), and `netsh ebpf show programs` answering.
# Prints {services{}, ebpfapi_dll, path, netsh_exit_code, netsh_output[], runtime_version}.
param()

$services = [ordered]@{}
foreach ($name in @('eBPFCore', 'NetEbpfExt')) {
    $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
    if ($null -eq $svc) { $services[$name] = $null } else { $services[$name] = [string]$svc.Status }
}

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

$old_pref = $ErrorActionPreference
$ErrorActionPreference = 'Continue'
try {
    $netsh = netsh.exe ebpf show programs 2>&1 | ForEach-Object { "$_" }
    $netsh_code = $LASTEXITCODE
} finally {
    $ErrorActionPreference = $old_pref
}

# The installed version, for CI_EFW_VERSION (CI builds carry none in their name): the MSI's
# DisplayVersion, else ebpfapi.dll's product version.
$version = $null
$uninstall_keys = @('HKLM:\Software\Microsoft\Windows\CurrentVersion\Uninstall\*')
foreach ($entry in @(Get-ItemProperty -Path $uninstall_keys -ErrorAction SilentlyContinue)) {
    if ($entry.DisplayName -eq 'eBPF for Windows' -and $entry.DisplayVersion) {
        $version = [string]$entry.DisplayVersion
    }
}
if ($null -eq $version -and $null -ne $found) {
    $version = [string](Get-Item -LiteralPath $found).VersionInfo.ProductVersion
}

$result = [ordered]@{
    services        = $services
    ebpfapi_dll     = $found
    path            = $env:PATH
    netsh_exit_code = $netsh_code
    netsh_output    = @(@($netsh) | Select-Object -First 20)
    runtime_version = $version
}
ConvertTo-Json -InputObject $result -Compress -Depth 5
