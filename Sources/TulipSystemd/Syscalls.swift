import CSystemd

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The one chokepoint for every C call of this module (STYLE §4.7). libsystemd returns `-errno`;
// POSIX calls return -1 and set `errno`, which is read right after the call and returned negated,
// so every wrapper here reports failure the libsystemd way.

// swift-format-ignore: AlwaysUseLowerCamelCase
@inline(never)
func system_sd_notify(unsetEnvironment: Bool, _ state: String) -> CInt {
    state.withCString { sd_notify(unsetEnvironment ? 1 : 0, $0) }
}

// swift-format-ignore: AlwaysUseLowerCamelCase
/// `sd_pid_notify_with_fds(0, …)`: `state` with `fds` attached (`SCM_RIGHTS`), for `FDSTORE=1`.
@inline(never)
func system_sd_pid_notify_with_fds(_ state: String, _ fds: [CInt]) -> CInt {
    state.withCString { text in
        fds.withUnsafeBufferPointer { sd_pid_notify_with_fds(0, 0, text, $0.baseAddress, UInt32($0.count)) }
    }
}

// swift-format-ignore: AlwaysUseLowerCamelCase
@inline(never)
func system_sd_watchdog_enabled(unsetEnvironment: Bool, _ microseconds: inout UInt64) -> CInt {
    sd_watchdog_enabled(unsetEnvironment ? 1 : 0, &microseconds)
}

// swift-format-ignore: AlwaysUseLowerCamelCase
@inline(never)
func system_sd_listen_fds(unsetEnvironment: Bool) -> CInt {
    sd_listen_fds(unsetEnvironment ? 1 : 0)
}

// swift-format-ignore: AlwaysUseLowerCamelCase
/// `sd_listen_fds_with_names`, with the names copied into Swift strings and freed.
@inline(never)
func system_sd_listen_fds_with_names(unsetEnvironment: Bool) -> (CInt, [String]) {
    var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
    let count = sd_listen_fds_with_names(unsetEnvironment ? 1 : 0, &names)
    var result: [String] = []
    if let names {
        var index = 0
        while let name = names[index] {
            result.append(String(cString: name))
            free(name)
            index += 1
        }
        free(names)
    }
    return (count, result)
}

// swift-format-ignore: AlwaysUseLowerCamelCase
@inline(never)
func system_sd_journal_sendv(_ iov: UnsafePointer<iovec>, _ count: CInt) -> CInt {
    sd_journal_sendv(iov, count)
}

// swift-format-ignore: AlwaysUseLowerCamelCase
/// `getsockopt(fd, SOL_SOCKET, option)` for an `int` option; `-errno` on failure.
@inline(never)
func system_getsockopt_int(_ fd: CInt, _ option: CInt) -> CInt {
    var value: CInt = 0
    var length = socklen_t(MemoryLayout<CInt>.size)
    if getsockopt(fd, SOL_SOCKET, option, &value, &length) != 0 { return -errno }
    return value
}

// swift-format-ignore: AlwaysUseLowerCamelCase
@inline(never)
func system_close(_ fd: CInt) -> CInt {
    close(fd) == 0 ? 0 : -errno
}

// swift-format-ignore: AlwaysUseLowerCamelCase
/// Sends `message` as one datagram to the unix socket `path` (a leading `@` names an abstract
/// socket), with `fds` attached as `SCM_RIGHTS` when there are any: what `sd_notify` and
/// `sd_pid_notify_with_fds` do with `NOTIFY_SOCKET`; `-errno` on failure.
@inline(never)
func system_send_datagram(path: String, _ message: String, fds: [CInt] = []) -> CInt {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(path.utf8)
    if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard !bytes.isEmpty, bytes.count < capacity else { return -EINVAL }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
    }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes[0] == 0 ? 0 : 1))
    let fd = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { return -errno }
    defer { close(fd) }
    // The control buffer is CMSG_SPACE(fds): a cmsghdr, then the descriptors, 8-byte aligned.
    let headerSize = MemoryLayout<cmsghdr>.size
    let payloadSize = fds.count * MemoryLayout<CInt>.size
    let controlSize = fds.isEmpty ? 0 : headerSize + (payloadSize + 7) / 8 * 8
    var control = [UInt8](repeating: 0, count: controlSize)
    var text = Array(message.utf8)
    let sent = text.withUnsafeMutableBytes { textBytes in
        control.withUnsafeMutableBytes { controlBytes in
            withUnsafeMutablePointer(to: &address) { addressPointer in
                var vector = iovec(iov_base: textBytes.baseAddress, iov_len: textBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var header = msghdr()
                    header.msg_name = UnsafeMutableRawPointer(addressPointer)
                    header.msg_namelen = length
                    header.msg_iov = vectorPointer
                    header.msg_iovlen = 1
                    if !fds.isEmpty {
                        var cmsg = cmsghdr()
                        cmsg.cmsg_len = headerSize + payloadSize
                        cmsg.cmsg_level = SOL_SOCKET
                        cmsg.cmsg_type = CInt(SCM_RIGHTS)
                        controlBytes.storeBytes(of: cmsg, as: cmsghdr.self)
                        for (index, descriptor) in fds.enumerated() {
                            controlBytes.storeBytes(
                                of: descriptor,
                                toByteOffset: headerSize + index * MemoryLayout<CInt>.size,
                                as: CInt.self
                            )
                        }
                        header.msg_control = controlBytes.baseAddress
                        header.msg_controllen = controlBytes.count
                    }
                    return sendmsg(fd, &header, CInt(MSG_NOSIGNAL))
                }
            }
        }
    }
    return sent < 0 ? -errno : 0
}

/// The `strerror` text of a positive errno.
func errnoDescription(_ code: CInt) -> String {
    String(cString: strerror(code))
}

// swift-format-ignore: AlwaysUseLowerCamelCase
/// `fstat(fd)`'s device and inode, or nil when `fd` is not open.
@inline(never)
func system_fstat_device_inode(_ fd: CInt) -> (UInt64, UInt64)? {
    var info = stat()
    guard fstat(fd, &info) == 0 else { return nil }
    return (UInt64(info.st_dev), UInt64(info.st_ino))
}

// swift-format-ignore: AlwaysUseLowerCamelCase
@inline(never)
func system_access_writable(_ path: String) -> Bool {
    access(path, W_OK) == 0
}
