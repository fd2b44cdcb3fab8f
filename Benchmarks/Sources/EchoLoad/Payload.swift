import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The bytes each connection sends, and the check that the echo returned exactly those bytes.
///
/// One reference buffer of `size + 255` bytes holds the pattern `byte[j] = j & 0xff`. Message `k` of
/// connection `c` is the `size`-byte slice that starts at `(7c + k) & 0xff`, so consecutive messages of a
/// connection differ and two connections differ: a server that echoes stale, reordered or another
/// connection's bytes is caught. Slices share the reference's storage, so sending costs no copy, and the
/// check is one `memcmp` per read.
struct Payload: Sendable {
    /// Bytes per message.
    let size: Int
    private let reference: ByteBuffer

    init(size: Int) {
        precondition(size > 0, "message size must be positive")
        self.size = size
        var reference = ByteBufferAllocator().buffer(capacity: size + 255)
        for j in 0..<(size + 255) {
            reference.writeInteger(UInt8(truncatingIfNeeded: j))
        }
        self.reference = reference
    }

    /// Where message `index` of connection `connection` starts in the reference pattern.
    func offset(connection: Int, index: UInt64) -> Int {
        Int(truncatingIfNeeded: (UInt64(truncatingIfNeeded: connection) &* 7 &+ index) & 0xff)
    }

    /// The message that starts at `offset` (a slice: no copy).
    func message(at offset: Int) -> ByteBuffer {
        // Invariant: offset <= 255 and the reference holds size + 255 bytes.
        self.reference.getSlice(at: self.reference.readerIndex + offset, length: self.size)!
    }

    /// Whether `received` equals the message that starts at `offset`, from byte `position` of it on.
    func matches(_ received: ByteBuffer, offset: Int, position: Int) -> Bool {
        let count = received.readableBytes
        guard position + count <= self.size else { return false }
        return received.withUnsafeReadableBytes { got in
            self.reference.withUnsafeReadableBytes { expected in
                memcmp(got.baseAddress!, expected.baseAddress! + offset + position, count) == 0
            }
        }
    }
}
