import NIOCore

extension Optional where Wrapped == ByteBuffer {
    /// Adds `data` to the bytes not consumed yet.
    ///
    /// The first chunk is kept as it is (no copy), later ones are appended to it. For the admin and
    /// metrics protocols, which parse whole lines.
    mutating func append(_ data: ByteBuffer) {
        guard var buffer = self.take() else {
            self = data
            return
        }
        var data = data
        buffer.writeBuffer(&data)
        self = buffer
    }
}
