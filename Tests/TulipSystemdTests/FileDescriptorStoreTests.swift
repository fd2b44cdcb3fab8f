import Testing

@testable import TulipSystemd

#if canImport(Glibc)
import Glibc
#endif

/// `FDSTORE=1` / `FDSTOREREMOVE=1` (issue 4, fd store) against a notify socket that receives the
/// descriptors with `recvmsg`, as systemd does.
struct FileDescriptorStoreTests {
    /// One datagram and the descriptors that came with it (`SCM_RIGHTS`).
    private func receive(_ listener: NotifyListener) -> (String, [CInt]) {
        var text = [UInt8](repeating: 0, count: 4096)
        var control = [UInt8](repeating: 0, count: 256)
        let received = text.withUnsafeMutableBytes { textBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: textBytes.baseAddress, iov_len: textBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var header = msghdr()
                    header.msg_iov = vectorPointer
                    header.msg_iovlen = 1
                    header.msg_control = controlBytes.baseAddress
                    header.msg_controllen = controlBytes.count
                    let count = recvmsg(listener.fd, &header, 0)
                    return (count, header.msg_controllen)
                }
            }
        }
        guard received.0 >= 0 else { return ("", []) }
        var fds: [CInt] = []
        let headerSize = MemoryLayout<cmsghdr>.size
        if received.1 >= headerSize {
            let cmsg = control.withUnsafeBytes { $0.load(as: cmsghdr.self) }
            if cmsg.cmsg_level == SOL_SOCKET, cmsg.cmsg_type == CInt(SCM_RIGHTS) {
                let count = (cmsg.cmsg_len - headerSize) / MemoryLayout<CInt>.size
                fds = (0..<count).map { index in
                    control.withUnsafeBytes {
                        $0.load(fromByteOffset: headerSize + index * MemoryLayout<CInt>.size, as: CInt.self)
                    }
                }
            }
        }
        return (String(decoding: text[..<received.0], as: UTF8.self), fds)
    }

    private func inode(_ fd: CInt) -> UInt64 {
        var info = stat()
        return fstat(fd, &info) == 0 ? UInt64(info.st_ino) : 0
    }

    @Test func storeSendsTheDescriptorsWithTheirName() throws {
        let listener = try NotifyListener()
        let notifier = SystemdNotifier(environment: listener.environment)
        var pair: [CInt] = [0, 0]
        #expect(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { for fd in pair { close(fd) } }
        #expect(notifier.storeFileDescriptors(pair, name: "echo"))
        let (message, fds) = self.receive(listener)
        defer { for fd in fds { close(fd) } }
        #expect(message == "FDSTORE=1\nFDNAME=echo")
        #expect(fds.count == 2)
        // The receiver got the same sockets (new descriptor numbers, same open files).
        #expect(fds.map(self.inode) == pair.map(self.inode))
    }

    @Test func removeNamesTheStoredDescriptors() throws {
        let listener = try NotifyListener()
        let notifier = SystemdNotifier(environment: listener.environment)
        #expect(notifier.removeStoredFileDescriptors(name: "gone"))
        let (message, fds) = self.receive(listener)
        #expect(message == "FDSTOREREMOVE=1\nFDNAME=gone")
        #expect(fds.isEmpty)
    }

    @Test func nothingIsSentWithoutDescriptorsOrNotifySocket() throws {
        let listener = try NotifyListener()
        #expect(!SystemdNotifier(environment: listener.environment).storeFileDescriptors([], name: "echo"))
        #expect(!SystemdNotifier(environment: [:]).storeFileDescriptors([0], name: "echo"))
    }
}
