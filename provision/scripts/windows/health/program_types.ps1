# health/program_types.ps1: the program types in the eBPF store, for the machine
# (HKLM\Software\eBPF\Providers\<provider>\ProgramData\<GUID>, value Name) and for this user
# (the same path under HKCU: efW also reads program information there, efW#3202, and this SSH
# user is the one that runs the tests).
# Prints {hklm: [{provider, guid, name}], hkcu: [{provider, guid, name}]}.
param()

function Get-ProgramType {
    param([string]$Root)
    if (-not (Test-Path -LiteralPath $Root)) {
        return
    }
    foreach ($provider in @(Get-ChildItem -LiteralPath $Root)) {
        $data = Join-Path $provider.PSPath 'ProgramData'
        if (-not (Test-Path -LiteralPath $data)) {
            continue
        }
        foreach ($type in @(Get-ChildItem -LiteralPath $data)) {
            $name = (Get-ItemProperty -LiteralPath $type.PSPath -Name Name -ErrorAction SilentlyContinue).Name
            [ordered]@{ provider = $provider.PSChildName; guid = $type.PSChildName; name = $name }
        }
    }
}

$result = [ordered]@{
    hklm = @(Get-ProgramType -Root 'HKLM:\Software\eBPF\Providers')
    hkcu = @(Get-ProgramType -Root 'HKCU:\Software\eBPF\Providers')
}
ConvertTo-Json -InputObject $result -Compress -Depth 5
