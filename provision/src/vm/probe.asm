; The KVM probe guest: what every real guest does first, timed.
;
; A boot sector (BIOS loads it at 0x7c00 in real mode) that builds identity page tables, enters
; long mode with paging, maps the first GiB with 2 MiB pages, then writes 128 MiB and reads a
; value back. It reports success by writing 0x31 to QEMU's isa-debug-exit port (0xf4), which
; makes QEMU exit with status (0x31 << 1) | 1 = 99.
;
; Why this much: on some hosts /dev/kvm opens and a real-mode boot sector runs under KVM, while
; a real kernel crawls (every guest page fault is emulated by an outer hypervisor): that shows
; only once the guest pages and touches memory. Healthy KVM runs this in well under a second.
;
; Assemble with `nasm -f bin probe.asm -o probe.bin` (a test checks that probe.bin matches).
bits 16
org 0x7c00
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov di, 0x1000              ; zero PML4, PDPT and PD (0x1000-0x3fff)
    mov cx, 0x1800
    rep stosw
    mov dword [0x1000], 0x2003  ; PML4[0] -> PDPT
    mov dword [0x2000], 0x3003  ; PDPT[0] -> PD
    mov dword [0x3000], 0x0083  ; PD[0]: 2 MiB page at 0
    mov eax, cr4
    or eax, 1 << 5              ; PAE
    mov cr4, eax
    mov eax, 0x1000
    mov cr3, eax
    mov ecx, 0xC0000080         ; EFER.LME
    rdmsr
    or eax, 1 << 8
    wrmsr
    lgdt [gdtr]
    mov eax, cr0
    or eax, 0x80000001          ; PG | PE
    mov cr0, eax
    jmp 0x08:long_mode
bits 64
long_mode:
    mov rdi, 0x3008             ; PD[1..511]: the rest of the first GiB
    mov rax, 0x200083
    mov rcx, 511
.map:
    mov [rdi], rax
    add rax, 0x200000
    add rdi, 8
    loop .map
    mov rax, cr3                ; flush the TLB
    mov cr3, rax
    mov rdi, 0x1000000          ; write 128 MiB from 16 MiB on
    mov rcx, 0x1000000
    mov rax, 0x5a5a5a5a5a5a5a5a
    rep stosq
    mov rbx, 0x1122334455667788
    mov [0x4000], rbx
    cmp rbx, [0x4000]
    jne .fail
    mov al, 0x31
    out 0xf4, al
.fail:
    hlt
    jmp .fail
align 8
gdt:
    dq 0
    dq 0x00209A0000000000       ; 64-bit code segment
gdtr:
    dw gdtr - gdt - 1
    dd gdt
times 510 - ($ - $$) db 0
    dw 0xaa55
