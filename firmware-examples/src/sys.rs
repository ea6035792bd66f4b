//! The only contact with the operating system: `write(2)` and `exit_group(2)` by raw syscalls,
//! and the `_start` entry point that aligns the stack and calls `fw_main`.

use core::arch::{asm, global_asm};

global_asm!(
    ".globl _start",
    "_start:",
    "xor rbp, rbp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym crate::fw_main,
);

/// Write bytes to a file descriptor.
pub fn write(fd: usize, bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        let ret: isize;
        // SAFETY: write(2) reads `len` bytes from a valid slice.
        unsafe {
            asm!("syscall", inlateout("rax") 1isize => ret, in("rdi") fd, in("rsi") bytes.as_ptr().add(done),
                 in("rdx") bytes.len() - done, lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        if ret <= 0 {
            return;
        }
        done += ret as usize;
    }
}

/// Terminate the process.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group(2) does not return.
    unsafe {
        asm!("syscall", in("rax") 231usize, in("rdi") code as isize, options(noreturn, nostack));
    }
}

/// Formatter writing to stdout through a small stack buffer.
pub struct Stdout;

impl core::fmt::Write for Stdout {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write(1, s.as_bytes());
        Ok(())
    }
}
