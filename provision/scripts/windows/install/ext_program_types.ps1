# install/ext_program_types.ps1: list the program types registered in the eBPF store
# (HKLM\Software\eBPF\Providers\<provider>\ProgramData\<program type GUID>, value Name).
# Prints {program_types: [{provider, guid, name}]}.
param()

$types = @()
$root = 'HKLM:\Software\eBPF\Providers'
if (Test-Path -LiteralPath $root) {
    foreach ($provider in @(Get-ChildItem -LiteralPath $root)) {
        $data = Join-Path $provider.PSPath 'ProgramData'
        if (-not (Test-Path -LiteralPath $data)) { continue }
        foreach ($type in @(Get-ChildItem -LiteralPath $data)) {
            $name = (Get-ItemProperty -LiteralPath $type.PSPath -Name Name -ErrorAction SilentlyContinue).Name
            $types += [ordered]@{ provider = $provider.PSChildName; guid = $type.PSChildName; name = $name }
        }
    }
}
ConvertTo-Json -InputObject ([ordered]@{ program_types = $types }) -Compress -Depth 4
