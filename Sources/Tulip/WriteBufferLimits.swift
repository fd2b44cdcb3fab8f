import NIOCore

/// A transport's write-buffer water marks, asyncio's `(low, high)` (FC-1, FC-2).
public struct WriteBufferLimits: Hashable, Sendable, CustomStringConvertible {
    /// Resume writing at or below this many buffered bytes.
    public let low: Int
    /// Pause writing above this many buffered bytes.
    public let high: Int

    /// asyncio's defaults for socket transports: 16 KiB and 64 KiB.
    public static let `default` = WriteBufferLimits(validatedLow: 16_384, high: 65_536)

    private init(validatedLow low: Int, high: Int) {
        self.low = low
        self.high = high
    }

    /// Fills in what is missing as `set_write_buffer_limits` does: only `low` gives
    /// `high = 4 * low`, only `high` gives `low = high / 4`, neither gives the defaults (FC-2).
    ///
    /// - Throws: ``TulipError/Code/invalidArgument`` unless `high >= low >= 0`.
    public init(high: Int? = nil, low: Int? = nil) throws {
        let resolvedHigh: Int
        let resolvedLow: Int
        switch (high, low) {
        case (nil, nil):
            (resolvedHigh, resolvedLow) = (Self.default.high, Self.default.low)
        case (nil, let low?):
            (resolvedHigh, resolvedLow) = (4 * low, low)
        case (let high?, nil):
            (resolvedHigh, resolvedLow) = (high, high / 4)
        case (let high?, let low?):
            (resolvedHigh, resolvedLow) = (high, low)
        }
        guard resolvedHigh >= resolvedLow, resolvedLow >= 0 else {
            throw TulipError.invalidArgument("high (\(resolvedHigh)) must be >= low (\(resolvedLow)) must be >= 0")
        }
        self.init(validatedLow: resolvedLow, high: resolvedHigh)
    }

    public var description: String { "(\(self.low), \(self.high))" }

    /// NIO's water marks that make its writability flag follow these limits exactly.
    ///
    /// NIO turns unwritable above `high` and writable again below its `low`, so `low + 1` resumes
    /// "at most low". NIO needs `1 <= low <= high`; when that cannot hold (`low == high`), `exact` is false
    /// and the transport watches the buffer itself.
    var nioWaterMark: (mark: ChannelOptions.Types.WriteBufferWaterMark, exact: Bool) {
        let nioLow = self.low + 1
        if nioLow <= self.high {
            return (.init(low: nioLow, high: self.high), true)
        }
        return (.init(low: nioLow, high: nioLow), false)
    }
}
