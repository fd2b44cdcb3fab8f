/// A JSON number, kept as the literal text that the document spelled.
///
/// Keeping the text, rather than converting to `Double` at parse time, means an integer such as
/// `18446744073709551615` converts exactly to `UInt64`, while ``doubleValue`` still gives the nearest
/// `Double` for fractional settings.
///
/// Equality and hashing compare the literal, so `1` and `1.0` differ; compare ``doubleValue`` for
/// numeric equality.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    /// The number exactly as written, valid RFC 8259 number syntax.
    public let literal: String

    // The parser has already checked the grammar; nothing else may skip the check.
    init(uncheckedLiteral literal: String) {
        self.literal = literal
    }

    /// Makes a number from an integer.
    public init(_ value: some BinaryInteger) {
        self.literal = String(value)
    }

    /// Makes a number from a `Double`; `nil` for infinities and NaN, which JSON cannot write.
    public init?(_ value: Double) {
        guard value.isFinite else { return nil }
        // `Double.description` writes `1e-05` and `1e+20`, both valid JSON, and round-trips exactly.
        self.literal = value.description
    }

    /// The nearest `Double`; infinite when the literal is beyond `Double`'s range, such as `1e400`.
    public var doubleValue: Double {
        // The grammar check guarantees `Double(_:)` accepts the literal; it returns ±inf on overflow.
        Double(self.literal)!
    }

    /// Whether the literal is written as an integer: no fraction and no exponent.
    public var isIntegerLiteral: Bool {
        !self.literal.utf8.contains { $0 == UInt8(ascii: ".") || ($0 | 0x20) == UInt8(ascii: "e") }
    }

    /// The value as an integer of type `T`, or `nil` when it has a fraction or does not fit.
    ///
    /// Literals with an exponent or a zero fraction, such as `1e3` or `80.0`, convert when the value is a
    /// whole number of magnitude below 2⁵³, where `Double` is exact.
    public func integerValue<T: FixedWidthInteger>(as type: T.Type = T.self) -> T? {
        if case .value(let value) = self.integerConversion(as: type) { return value }
        return nil
    }

    /// The literal.
    public var description: String { self.literal }
}

// MARK: - Integer conversion

extension JSONNumber {
    enum IntegerConversion<T> {
        case value(T)
        case notInteger
        case outOfRange
    }

    // Tells a fraction from an overflow, because the two deserve different error messages.
    func integerConversion<T: FixedWidthInteger>(as type: T.Type) -> IntegerConversion<T> {
        if self.isIntegerLiteral {
            if let value = T(self.literal) { return .value(value) }
            // `T("-0")` succeeds for signed types only; negative zero is zero for any type.
            if self.literal == "-0" { return .value(0) }
            return .outOfRange
        }
        let double = self.doubleValue
        guard double.isFinite else { return .outOfRange }
        guard double.rounded(.towardZero) == double else { return .notInteger }
        guard double.magnitude < 0x1p53, let value = T(exactly: double) else { return .outOfRange }
        return .value(value)
    }
}
