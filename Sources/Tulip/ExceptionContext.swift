/// What the loop's exception handler is told about an error nobody else could receive.
///
/// The equivalent of asyncio's context dictionary (`message`, `exception`, `handle`, …).
public struct ExceptionContext: Sendable, CustomStringConvertible {
    /// What failed, in asyncio's words ("Exception in callback …").
    public var message: String
    /// The error, if there was one.
    public var error: (any Error)?

    /// Makes a context.
    public init(message: String, error: (any Error)? = nil) {
        self.message = message
        self.error = error
    }

    public var description: String {
        if let error { return "\(self.message): \(error)" }
        return self.message
    }
}
