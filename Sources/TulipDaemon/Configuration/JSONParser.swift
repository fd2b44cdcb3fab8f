/// A strict RFC 8259 JSON parser that records where every value starts.
///
/// It accepts exactly RFC 8259: no comments, no trailing commas, no single quotes, no `NaN`; strings
/// must be valid UTF-8 with control characters escaped, and `\u` escapes must pair surrogates. A
/// leading UTF-8 byte order mark is skipped, as RFC 8259 §8.1 permits. Objects with the same key twice
/// are rejected, because a configuration that says two things must not silently mean the last one.
///
/// Errors are ``ConfigurationError`` values with code ``ConfigurationError/Code/syntax`` (or
/// ``ConfigurationError/Code/duplicateKey``, which also names the key path) and the 1-based line and
/// column of the offending character, the column counted in Unicode scalars (see ``JSONValue/Location``).
///
/// The parser works in one pass over contiguous bytes, copies each string once, and tracks columns
/// incrementally, so its cost is linear in the input size.
public struct JSONParser: Sendable {
    /// The nesting depth allowed when none is given.
    public static let defaultMaximumDepth = 256

    /// How deeply arrays and objects may nest; the root container is depth 1.
    ///
    /// The parser recurses once per level, so the limit also bounds its stack use.
    public var maximumDepth: Int

    /// Makes a parser.
    ///
    /// - Parameter maximumDepth: How deeply arrays and objects may nest, at least 1.
    public init(maximumDepth: Int = JSONParser.defaultMaximumDepth) {
        precondition(maximumDepth >= 1, "maximumDepth must be at least 1")
        self.maximumDepth = maximumDepth
    }

    /// Parses one JSON document.
    ///
    /// - Parameter bytes: The document as UTF-8.
    /// - Returns: The root value and its position.
    /// - Throws: ``ConfigurationError`` with code ``ConfigurationError/Code/syntax`` or
    ///   ``ConfigurationError/Code/duplicateKey``; its ``ConfigurationError/file`` is `nil`.
    public func parse(_ bytes: some Collection<UInt8>) throws(ConfigurationError) -> JSONValue.Node {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            var reader = Reader(bytes: buffer, maximumDepth: self.maximumDepth)
            return Result { () throws(ConfigurationError) in try reader.parseDocument() }
        }
        guard let result else { return try self.parse(Array(bytes)) }
        return try result.get()
    }
}

// MARK: - Reader

extension JSONParser {
    private enum PathComponent {
        case key(String)
        case index(Int)
    }

    private struct Reader {
        private let bytes: UnsafeBufferPointer<UInt8>
        private let maximumDepth: Int
        private var offset = 0

        // Lines advance only in whitespace, because strings cannot hold a raw line break. Columns are
        // counted lazily from the last position asked about, so asking in document order is linear.
        private var line = 1
        private var lineStart = 0
        private var countedOffset = 0
        private var countedColumn = 1
        private var contentStart = 0

        // A duplicate-key error collects the path to its key while it unwinds, innermost first, so the
        // happy path never maintains a path stack.
        private var errorPath: [PathComponent] = []

        init(bytes: UnsafeBufferPointer<UInt8>, maximumDepth: Int) {
            self.bytes = bytes
            self.maximumDepth = maximumDepth
        }

        mutating func parseDocument() throws(ConfigurationError) -> JSONValue.Node {
            if self.bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
                self.offset = 3
                self.lineStart = 3
                self.countedOffset = 3
                self.contentStart = 3
            }
            self.skipWhitespace()
            let root: JSONValue.Node
            do throws(ConfigurationError) {
                root = try self.parseValue(depth: 0)
            } catch {
                var error = error
                if error.code == .duplicateKey {
                    error.keyPath = self.errorPath.reversed().reduce(into: "") { path, component in
                        switch component {
                        case .key(let key): path = path.appendingKeyPath(key: key)
                        case .index(let index): path = path.appendingKeyPath(index: index)
                        }
                    }
                }
                throw error
            }
            self.skipWhitespace()
            guard self.offset == self.bytes.count else {
                throw self.error("trailing data after JSON value", at: self.offset)
            }
            return root
        }

        // MARK: Values

        private mutating func parseValue(depth: Int) throws(ConfigurationError) -> JSONValue.Node {
            guard self.offset < self.bytes.count else { throw self.errorExpecting("expected a JSON value") }
            let location = self.location(of: self.offset)
            switch self.bytes[self.offset] {
            case UInt8(ascii: "{"):
                return try self.parseObject(depth: depth + 1, at: location)
            case UInt8(ascii: "["):
                return try self.parseArray(depth: depth + 1, at: location)
            case UInt8(ascii: "\""):
                return JSONValue.Node(.string(try self.parseString()), at: location)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return JSONValue.Node(.number(try self.parseNumber()), at: location)
            case UInt8(ascii: "t"):
                try self.parseLiteral("true")
                return JSONValue.Node(.bool(true), at: location)
            case UInt8(ascii: "f"):
                try self.parseLiteral("false")
                return JSONValue.Node(.bool(false), at: location)
            case UInt8(ascii: "n"):
                try self.parseLiteral("null")
                return JSONValue.Node(.null, at: location)
            default:
                throw self.error("expected a JSON value", at: self.offset)
            }
        }

        private mutating func parseObject(
            depth: Int,
            at location: JSONValue.Location
        ) throws(ConfigurationError) -> JSONValue.Node {
            try self.checkDepth(depth)
            self.offset += 1
            var object = JSONObject()
            self.skipWhitespace()
            if self.peek() == UInt8(ascii: "}") {
                self.offset += 1
                return JSONValue.Node(.object(object), at: location)
            }
            while true {
                guard self.peek() == UInt8(ascii: "\"") else {
                    throw self.errorExpecting(object.isEmpty ? "expected string key or '}'" : "expected string key")
                }
                let keyLocation = self.location(of: self.offset)
                let key = try self.parseString()
                if let first = object.index(forKey: key) {
                    self.errorPath.append(.key(key))
                    throw ConfigurationError(
                        .duplicateKey,
                        "duplicate key '\(key)' (first at \(object[first].keyLocation))",
                        location: keyLocation
                    )
                }
                self.skipWhitespace()
                guard self.peek() == UInt8(ascii: ":") else {
                    throw self.errorExpecting("expected ':' after object key")
                }
                self.offset += 1
                self.skipWhitespace()
                let value: JSONValue.Node
                do throws(ConfigurationError) {
                    value = try self.parseValue(depth: depth)
                } catch {
                    if error.code == .duplicateKey { self.errorPath.append(.key(key)) }
                    throw error
                }
                object.appendAssumingUniqueKey(JSONObject.Member(key: key, keyLocation: keyLocation, value: value))
                self.skipWhitespace()
                switch self.peek() {
                case UInt8(ascii: "}"):
                    self.offset += 1
                    return JSONValue.Node(.object(object), at: location)
                case UInt8(ascii: ","):
                    let comma = self.offset
                    self.offset += 1
                    self.skipWhitespace()
                    if self.peek() == UInt8(ascii: "}") { throw self.error("trailing comma in object", at: comma) }
                default:
                    throw self.errorExpecting("expected ',' or '}' after object member")
                }
            }
        }

        private mutating func parseArray(
            depth: Int,
            at location: JSONValue.Location
        ) throws(ConfigurationError) -> JSONValue.Node {
            try self.checkDepth(depth)
            self.offset += 1
            var elements: [JSONValue.Node] = []
            self.skipWhitespace()
            if self.peek() == UInt8(ascii: "]") {
                self.offset += 1
                return JSONValue.Node(.array(elements), at: location)
            }
            while true {
                do throws(ConfigurationError) {
                    elements.append(try self.parseValue(depth: depth))
                } catch {
                    if error.code == .duplicateKey { self.errorPath.append(.index(elements.count)) }
                    throw error
                }
                self.skipWhitespace()
                switch self.peek() {
                case UInt8(ascii: "]"):
                    self.offset += 1
                    return JSONValue.Node(.array(elements), at: location)
                case UInt8(ascii: ","):
                    let comma = self.offset
                    self.offset += 1
                    self.skipWhitespace()
                    if self.peek() == UInt8(ascii: "]") { throw self.error("trailing comma in array", at: comma) }
                default:
                    throw self.errorExpecting("expected ',' or ']' after array element")
                }
            }
        }

        private mutating func checkDepth(_ depth: Int) throws(ConfigurationError) {
            guard depth <= self.maximumDepth else {
                throw self.error("nesting depth exceeds the limit of \(self.maximumDepth)", at: self.offset)
            }
        }

        private mutating func parseLiteral(_ literal: StaticString) throws(ConfigurationError) {
            let start = self.offset
            let expected = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
            guard self.bytes[start...].starts(with: expected) else {
                throw self.error("invalid literal; expected '\(literal)'", at: start)
            }
            self.offset += expected.count
        }

        // MARK: Numbers

        private mutating func parseNumber() throws(ConfigurationError) -> JSONNumber {
            let start = self.offset
            if self.peek() == UInt8(ascii: "-") { self.offset += 1 }
            guard let first = self.peek(), Self.isDigit(first) else {
                throw self.errorExpecting("expected digit after '-'")
            }
            if first == UInt8(ascii: "0") {
                if let next = self.peek(at: self.offset + 1), Self.isDigit(next) {
                    throw self.error("leading zeros are not allowed in numbers", at: self.offset)
                }
                self.offset += 1
            } else {
                self.skipDigits()
            }
            if self.peek() == UInt8(ascii: ".") {
                self.offset += 1
                guard let digit = self.peek(), Self.isDigit(digit) else {
                    throw self.errorExpecting("expected digit after decimal point")
                }
                self.skipDigits()
            }
            if let exponent = self.peek(), (exponent | 0x20) == UInt8(ascii: "e") {
                self.offset += 1
                if let sign = self.peek(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { self.offset += 1 }
                guard let digit = self.peek(), Self.isDigit(digit) else {
                    throw self.errorExpecting("expected digit in exponent")
                }
                self.skipDigits()
            }
            let literal = String(
                decoding: UnsafeBufferPointer(rebasing: self.bytes[start..<self.offset]),
                as: UTF8.self
            )
            return JSONNumber(uncheckedLiteral: literal)
        }

        private static func isDigit(_ byte: UInt8) -> Bool {
            byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
        }

        private mutating func skipDigits() {
            while let byte = self.peek(), Self.isDigit(byte) { self.offset += 1 }
        }

        // MARK: Strings

        // Strings without escapes, nearly all of them, become a `String` straight from the input bytes;
        // the others are assembled once in a byte buffer.
        private mutating func parseString() throws(ConfigurationError) -> String {
            let quote = self.offset
            let end = self.bytes.count
            var index = quote + 1
            while index < end {
                let byte = self.bytes[index]
                if byte == UInt8(ascii: "\"") {
                    self.offset = index + 1
                    return String(
                        decoding: UnsafeBufferPointer(rebasing: self.bytes[(quote + 1)..<index]),
                        as: UTF8.self
                    )
                } else if byte == UInt8(ascii: "\\") {
                    break
                }
                index = try self.skipCharacter(at: index, stringStart: quote)
            }
            guard index < end else { throw self.error("unterminated string", at: quote) }

            var buffer: [UInt8] = []
            buffer.reserveCapacity(index - quote + 16)
            var segmentStart = quote + 1
            while index < end {
                let byte = self.bytes[index]
                if byte == UInt8(ascii: "\"") {
                    buffer.append(contentsOf: UnsafeBufferPointer(rebasing: self.bytes[segmentStart..<index]))
                    self.offset = index + 1
                    return String(decoding: buffer, as: UTF8.self)
                } else if byte == UInt8(ascii: "\\") {
                    buffer.append(contentsOf: UnsafeBufferPointer(rebasing: self.bytes[segmentStart..<index]))
                    index = try self.decodeEscape(at: index, stringStart: quote, into: &buffer)
                    segmentStart = index
                } else {
                    index = try self.skipCharacter(at: index, stringStart: quote)
                }
            }
            throw self.error("unterminated string", at: quote)
        }

        // Checks one unescaped character of a string and returns the index after it.
        private mutating func skipCharacter(at index: Int, stringStart: Int) throws(ConfigurationError) -> Int {
            let byte = self.bytes[index]
            if byte >= 0x20 && byte < 0x80 { return index + 1 }
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                throw self.error("unterminated string", at: stringStart)
            }
            if byte < 0x20 {
                throw self.error(
                    "control character \(Self.codePoint(UInt32(byte))) in string must be escaped",
                    at: index
                )
            }
            return try self.skipMultibyteUTF8(at: index)
        }

        // Validates per RFC 3629 §4, which excludes overlong forms, surrogates and values past U+10FFFF.
        private mutating func skipMultibyteUTF8(at index: Int) throws(ConfigurationError) -> Int {
            let lead = self.bytes[index]
            let count: Int
            var secondRange: ClosedRange<UInt8> = 0x80...0xBF
            switch lead {
            case 0xC2...0xDF: count = 1
            case 0xE0:
                count = 2
                secondRange = 0xA0...0xBF
            case 0xED:
                count = 2
                secondRange = 0x80...0x9F
            case 0xE1...0xEF: count = 2
            case 0xF0:
                count = 3
                secondRange = 0x90...0xBF
            case 0xF4:
                count = 3
                secondRange = 0x80...0x8F
            case 0xF1...0xF3: count = 3
            default: throw self.error("invalid UTF-8 in string", at: index)
            }
            guard index + count < self.bytes.count, secondRange.contains(self.bytes[index + 1]) else {
                throw self.error("invalid UTF-8 in string", at: index)
            }
            for continuation in self.bytes[(index + 2)..<(index + count + 1)] where continuation & 0xC0 != 0x80 {
                throw self.error("invalid UTF-8 in string", at: index)
            }
            return index + count + 1
        }

        // Appends the UTF-8 of the escape at `index` (a backslash) and returns the index after it.
        private mutating func decodeEscape(
            at index: Int,
            stringStart: Int,
            into buffer: inout [UInt8]
        ) throws(ConfigurationError) -> Int {
            guard let escaped = self.peek(at: index + 1) else {
                throw self.error("unterminated string", at: stringStart)
            }
            switch escaped {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(escaped)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                let unit = try self.parseHexEscape(at: index)
                switch unit {
                case 0xD800...0xDBFF:
                    guard self.peek(at: index + 6) == UInt8(ascii: "\\"), self.peek(at: index + 7) == UInt8(ascii: "u")
                    else {
                        throw self.error("unpaired surrogate \\u\(Self.hex(unit)) in string", at: index)
                    }
                    let low = try self.parseHexEscape(at: index + 6)
                    guard (0xDC00...0xDFFF).contains(low) else {
                        throw self.error("unpaired surrogate \\u\(Self.hex(unit)) in string", at: index)
                    }
                    Self.appendUTF8(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), to: &buffer)
                    return index + 12
                case 0xDC00...0xDFFF:
                    throw self.error("unpaired surrogate \\u\(Self.hex(unit)) in string", at: index)
                default:
                    Self.appendUTF8(unit, to: &buffer)
                    return index + 6
                }
            default:
                let shown = (0x21...0x7E).contains(escaped) ? " '\\\(Character(Unicode.Scalar(escaped)))'" : ""
                throw self.error("invalid escape sequence\(shown) in string", at: index)
            }
            return index + 2
        }

        // Reads the four hex digits of the `\uXXXX` escape whose backslash is at `index`.
        private mutating func parseHexEscape(at index: Int) throws(ConfigurationError) -> UInt32 {
            var value: UInt32 = 0
            for digitIndex in (index + 2)..<(index + 6) {
                let digit: UInt8
                switch self.peek(at: digitIndex) {
                case let byte? where Self.isDigit(byte): digit = byte - UInt8(ascii: "0")
                case let byte? where (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20):
                    digit = (byte | 0x20) - UInt8(ascii: "a") + 10
                default:
                    throw self.error("invalid escape sequence in string; \\u needs four hex digits", at: index)
                }
                value = value << 4 | UInt32(digit)
            }
            return value
        }

        private static func appendUTF8(_ value: UInt32, to buffer: inout [UInt8]) {
            switch value {
            case ..<0x80:
                buffer.append(UInt8(value))
            case ..<0x800:
                buffer.append(0xC0 | UInt8(value >> 6))
                buffer.append(0x80 | UInt8(value & 0x3F))
            case ..<0x1_0000:
                buffer.append(0xE0 | UInt8(value >> 12))
                buffer.append(0x80 | UInt8(value >> 6 & 0x3F))
                buffer.append(0x80 | UInt8(value & 0x3F))
            default:
                buffer.append(0xF0 | UInt8(value >> 18))
                buffer.append(0x80 | UInt8(value >> 12 & 0x3F))
                buffer.append(0x80 | UInt8(value >> 6 & 0x3F))
                buffer.append(0x80 | UInt8(value & 0x3F))
            }
        }

        private static func hex(_ value: UInt32) -> String {
            let digits = String(value, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
        }

        private static func codePoint(_ value: UInt32) -> String { "U+" + Self.hex(value) }

        // MARK: Whitespace and positions

        private func peek() -> UInt8? {
            self.offset < self.bytes.count ? self.bytes[self.offset] : nil
        }

        private func peek(at index: Int) -> UInt8? {
            index < self.bytes.count ? self.bytes[index] : nil
        }

        private mutating func skipWhitespace() {
            while self.offset < self.bytes.count {
                switch self.bytes[self.offset] {
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                    self.offset += 1
                case UInt8(ascii: "\n"):
                    self.offset += 1
                    self.line += 1
                    self.lineStart = self.offset
                    self.countedOffset = self.offset
                    self.countedColumn = 1
                default:
                    return
                }
            }
        }

        private mutating func location(of position: Int) -> JSONValue.Location {
            guard position >= self.lineStart else { return self.recountLocation(of: position) }
            if position < self.countedOffset {
                self.countedOffset = self.lineStart
                self.countedColumn = 1
            }
            var column = self.countedColumn
            for byte in self.bytes[self.countedOffset..<position] where byte & 0xC0 != 0x80 {
                column += 1
            }
            self.countedOffset = position
            self.countedColumn = column
            return JSONValue.Location(line: self.line, column: column)
        }

        // Only errors can ask about an earlier line; they can afford a scan from the start.
        private func recountLocation(of position: Int) -> JSONValue.Location {
            var line = 1
            var column = 1
            for byte in self.bytes[self.contentStart..<position] {
                if byte == UInt8(ascii: "\n") {
                    line += 1
                    column = 1
                } else if byte & 0xC0 != 0x80 {
                    column += 1
                }
            }
            return JSONValue.Location(line: line, column: column)
        }

        // MARK: Errors

        private mutating func error(_ message: String, at position: Int) -> ConfigurationError {
            .syntax(message, at: self.location(of: position))
        }

        // At the end of input the expectation alone would mislead: say that the input stopped.
        private mutating func errorExpecting(_ expectation: String) -> ConfigurationError {
            if self.offset < self.bytes.count { return self.error(expectation, at: self.offset) }
            return self.error("unexpected end of input; \(expectation)", at: self.offset)
        }
    }
}
