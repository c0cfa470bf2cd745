# health/secure_boot.ps1: is UEFI Secure Boot on? Confirm-SecureBootUEFI answers True or False on
# UEFI machines and throws "Cmdlet not supported on this platform" on BIOS ones.
# Prints {state: "on" | "off" | "unsupported" | "unknown", detail}.
param()

$state = 'unknown'
$detail = $null
try {
    if (Confirm-SecureBootUEFI) {
        $state = 'on'
    } else {
        $state = 'off'
    }
} catch [System.PlatformNotSupportedException] {
    $state = 'unsupported'
    $detail = $_.Exception.Message
} catch {
    $detail = $_.Exception.Message
    if ($detail -match 'not supported') {
        $state = 'unsupported'
    }
}
ConvertTo-Json -InputObject ([ordered]@{ state = $state; detail = $detail }) -Compress
