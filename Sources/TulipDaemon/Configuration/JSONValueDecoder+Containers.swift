// The `Decoder` and its three containers behind `JSONValueDecoder`. They throw the standard
// `DecodingError`s with messages written for operators; `JSONValueDecoder` turns those into
// `ConfigurationError`s with key paths and positions.

extension JSONValueDecoder {
    // MARK: - Decoder and single value container

    struct NodeDecoder: Decoder, SingleValueDecodingContainer {
        let value: JSONValue
        let codingPath: [any CodingKey]
        let context: Context

        var userInfo: [CodingUserInfoKey: Any] { self.context.userInfo }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            guard case .object(let object) = self.value else {
                throw DecodingError.mismatch(expected: "object", got: self.value, codingPath: self.codingPath)
            }
            let usage = self.context.usage(of: object, codingPath: self.codingPath)
            return KeyedDecodingContainer(
                KeyedContainer(usage: usage, codingPath: self.codingPath, context: self.context)
            )
        }

        func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
            guard case .array(let elements) = self.value else {
                throw DecodingError.mismatch(expected: "array", got: self.value, codingPath: self.codingPath)
            }
            return UnkeyedContainer(elements: elements, codingPath: self.codingPath, context: self.context)
        }

        func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

        func decodeNil() -> Bool { self.value == .null }

        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            try self.context.decode(type, from: self.value, codingPath: self.codingPath)
        }

        // The concrete overloads below all go through the generic path, which dispatches to `Scalar`.
        func decode(_ type: Bool.Type) throws -> Bool { try self.decodeValue(type) }
        func decode(_ type: String.Type) throws -> String { try self.decodeValue(type) }
        func decode(_ type: Double.Type) throws -> Double { try self.decodeValue(type) }
        func decode(_ type: Float.Type) throws -> Float { try self.decodeValue(type) }
        func decode(_ type: Int.Type) throws -> Int { try self.decodeValue(type) }
        func decode(_ type: Int8.Type) throws -> Int8 { try self.decodeValue(type) }
        func decode(_ type: Int16.Type) throws -> Int16 { try self.decodeValue(type) }
        func decode(_ type: Int32.Type) throws -> Int32 { try self.decodeValue(type) }
        func decode(_ type: Int64.Type) throws -> Int64 { try self.decodeValue(type) }
        func decode(_ type: UInt.Type) throws -> UInt { try self.decodeValue(type) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try self.decodeValue(type) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try self.decodeValue(type) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try self.decodeValue(type) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try self.decodeValue(type) }
        @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
        func decode(_ type: Int128.Type) throws -> Int128 { try self.decodeValue(type) }
        @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
        func decode(_ type: UInt128.Type) throws -> UInt128 { try self.decodeValue(type) }

        // A distinct name, so that the overloads above cannot resolve to themselves.
        private func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
            try self.context.decode(type, from: self.value, codingPath: self.codingPath)
        }
    }

    // MARK: - Keyed container

    struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let usage: ObjectUsage
        let codingPath: [any CodingKey]
        let context: Context

        var allKeys: [Key] { self.usage.object.compactMap { Key(stringValue: $0.key) } }

        // Asking whether a key exists counts as knowing the key, so `decodeIfPresent` marks it used.
        func contains(_ key: Key) -> Bool { self.usage.access(key.stringValue) != nil }

        func decodeNil(forKey key: Key) throws -> Bool { try self.node(for: key).value == .null }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try self.decodeValue(type, forKey: key)
        }

        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try self.decodeValue(type, forKey: key) }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try self.decodeValue(type, forKey: key) }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try self.decodeValue(type, forKey: key) }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try self.decodeValue(type, forKey: key) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try self.decodeValue(type, forKey: key) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try self.decodeValue(type, forKey: key) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try self.decodeValue(type, forKey: key) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try self.decodeValue(type, forKey: key) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try self.decodeValue(type, forKey: key) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try self.decodeValue(type, forKey: key) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try self.decodeValue(type, forKey: key) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try self.decodeValue(type, forKey: key) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try self.decodeValue(type, forKey: key) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try self.decodeValue(type, forKey: key) }
        @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
        func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 { try self.decodeValue(type, forKey: key) }
        @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
        func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 { try self.decodeValue(type, forKey: key) }

        func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type,
            forKey key: Key
        ) throws -> KeyedDecodingContainer<NestedKey> {
            try self.decoder(for: key).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try self.decoder(for: key).unkeyedContainer()
        }

        func superDecoder() throws -> any Decoder {
            try self.superDecoder(forKey: NamedKey("super"))
        }

        func superDecoder(forKey key: Key) throws -> any Decoder {
            try self.superDecoder(forKey: key as any CodingKey)
        }

        // As in Foundation's JSONDecoder, a missing super key decodes as null rather than failing here.
        private func superDecoder(forKey key: any CodingKey) throws -> any Decoder {
            let value = self.usage.access(key.stringValue).map { self.usage.object[$0].value.value } ?? .null
            return NodeDecoder(value: value, codingPath: self.codingPath + [key], context: self.context)
        }

        private func decodeValue<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try self.context.decode(type, from: self.node(for: key).value, codingPath: self.codingPath + [key])
        }

        private func decoder(for key: Key) throws -> NodeDecoder {
            NodeDecoder(
                value: try self.node(for: key).value,
                codingPath: self.codingPath + [key],
                context: self.context
            )
        }

        private func node(for key: Key) throws -> JSONValue.Node {
            guard let index = self.usage.access(key.stringValue) else {
                let context = DecodingError.Context(
                    codingPath: self.codingPath,
                    debugDescription: "missing required key '\(key.stringValue)'"
                )
                throw DecodingError.keyNotFound(key, context)
            }
            return self.usage.object[index].value
        }
    }

    // MARK: - Unkeyed container

    struct UnkeyedContainer: UnkeyedDecodingContainer {
        let elements: [JSONValue.Node]
        let codingPath: [any CodingKey]
        let context: Context
        private(set) var currentIndex = 0

        init(elements: [JSONValue.Node], codingPath: [any CodingKey], context: Context) {
            self.elements = elements
            self.codingPath = codingPath
            self.context = context
        }

        var count: Int? { self.elements.count }
        var isAtEnd: Bool { self.currentIndex >= self.elements.count }

        mutating func decodeNil() throws -> Bool {
            guard try self.node(decoding: Never?.self).value == .null else { return false }
            self.currentIndex += 1
            return true
        }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try self.decodeValue(type) }

        mutating func decode(_ type: Bool.Type) throws -> Bool { try self.decodeValue(type) }
        mutating func decode(_ type: String.Type) throws -> String { try self.decodeValue(type) }
        mutating func decode(_ type: Double.Type) throws -> Double { try self.decodeValue(type) }
        mutating func decode(_ type: Float.Type) throws -> Float { try self.decodeValue(type) }
        mutating func decode(_ type: Int.Type) throws -> Int { try self.decodeValue(type) }
        mutating func decode(_ type: Int8.Type) throws -> Int8 { try self.decodeValue(type) }
        mutating func decode(_ type: Int16.Type) throws -> Int16 { try self.decodeValue(type) }
        mutating func decode(_ type: Int32.Type) throws -> Int32 { try self.decodeValue(type) }
        mutating func decode(_ type: Int64.Type) throws -> Int64 { try self.decodeValue(type) }
        mutating func decode(_ type: UInt.Type) throws -> UInt { try self.decodeValue(type) }
        mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try self.decodeValue(type) }
        mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try self.decodeValue(type) }
        mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try self.decodeValue(type) }
        mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try self.decodeValue(type) }
        @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
        mutating func decode(_ type: Int128.Type) throws -> Int128 { try self.decodeValue(type) }
        @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
        mutating func decode(_ type: UInt128.Type) throws -> UInt128 { try self.decodeValue(type) }

        mutating func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type
        ) throws -> KeyedDecodingContainer<NestedKey> {
            let container = try self.nextDecoder(decoding: KeyedDecodingContainer<NestedKey>.self).container(
                keyedBy: type
            )
            self.currentIndex += 1
            return container
        }

        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            let container = try self.nextDecoder(decoding: [JSONValue].self).unkeyedContainer()
            self.currentIndex += 1
            return container
        }

        mutating func superDecoder() throws -> any Decoder {
            let decoder = try self.nextDecoder(decoding: JSONValue.self)
            self.currentIndex += 1
            return decoder
        }

        // The index advances only after a successful decode, as the `UnkeyedDecodingContainer` contract asks.
        private mutating func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
            let node = try self.node(decoding: type)
            let value = try self.context.decode(type, from: node.value, codingPath: self.elementCodingPath)
            self.currentIndex += 1
            return value
        }

        private func nextDecoder<T>(decoding type: T.Type) throws -> NodeDecoder {
            NodeDecoder(
                value: try self.node(decoding: type).value,
                codingPath: self.elementCodingPath,
                context: self.context
            )
        }

        private var elementCodingPath: [any CodingKey] { self.codingPath + [IndexKey(self.currentIndex)] }

        private func node<T>(decoding type: T.Type) throws -> JSONValue.Node {
            guard !self.isAtEnd else {
                let count = self.elements.count
                let context = DecodingError.Context(
                    codingPath: self.elementCodingPath,
                    debugDescription: "expected more than \(count) element\(count == 1 ? "" : "s") in array"
                )
                throw DecodingError.valueNotFound(type, context)
            }
            return self.elements[self.currentIndex]
        }
    }

    // MARK: - Keys

    /// An array position in a coding path.
    struct IndexKey: CodingKey {
        let index: Int

        init(_ index: Int) { self.index = index }
        init?(intValue: Int) { self.index = intValue }
        init?(stringValue: String) { nil }

        var intValue: Int? { self.index }
        var stringValue: String { "Index \(self.index)" }
    }

    /// An object key that no `CodingKey` type of the caller's supplies, such as `super`.
    struct NamedKey: CodingKey {
        let stringValue: String

        init(_ stringValue: String) { self.stringValue = stringValue }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }

        var intValue: Int? { nil }
    }
}

// MARK: - Scalars

extension JSONValueDecoder {
    // Types decoded straight from a JSON scalar instead of through `init(from:)`, which for these types
    // would only call back into a single value container.
    protocol Scalar {
        static func decode(from value: JSONValue, codingPath: [any CodingKey]) throws -> Self
    }
}

extension Bool: JSONValueDecoder.Scalar {
    static func decode(from value: JSONValue, codingPath: [any CodingKey]) throws -> Bool {
        guard case .bool(let bool) = value else {
            throw DecodingError.mismatch(expected: "boolean", got: value, codingPath: codingPath)
        }
        return bool
    }
}

extension String: JSONValueDecoder.Scalar {
    static func decode(from value: JSONValue, codingPath: [any CodingKey]) throws -> String {
        guard case .string(let string) = value else {
            throw DecodingError.mismatch(expected: "string", got: value, codingPath: codingPath)
        }
        return string
    }
}

extension JSONValueDecoder.Scalar where Self: BinaryFloatingPoint {
    static func decode(from value: JSONValue, codingPath: [any CodingKey]) throws -> Self {
        guard case .number(let number) = value else {
            throw DecodingError.mismatch(expected: "number", got: value, codingPath: codingPath)
        }
        let converted = Self(number.doubleValue)
        guard converted.isFinite else {
            let message = "\(number.literal) is out of range for \(Self.self)"
            throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: codingPath, debugDescription: message))
        }
        return converted
    }
}

extension JSONValueDecoder.Scalar where Self: FixedWidthInteger {
    static func decode(from value: JSONValue, codingPath: [any CodingKey]) throws -> Self {
        guard case .number(let number) = value else {
            throw DecodingError.mismatch(expected: "integer", got: value, codingPath: codingPath)
        }
        switch number.integerConversion(as: Self.self) {
        case .value(let integer):
            return integer
        case .notInteger:
            throw DecodingError.mismatch(expected: "integer", got: value, codingPath: codingPath)
        case .outOfRange:
            let message = "\(number.literal) is out of range for \(Self.self) (\(Self.min)...\(Self.max))"
            throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: codingPath, debugDescription: message))
        }
    }
}

extension Double: JSONValueDecoder.Scalar {}
extension Float: JSONValueDecoder.Scalar {}
extension Int: JSONValueDecoder.Scalar {}
extension Int8: JSONValueDecoder.Scalar {}
extension Int16: JSONValueDecoder.Scalar {}
extension Int32: JSONValueDecoder.Scalar {}
extension Int64: JSONValueDecoder.Scalar {}
extension UInt: JSONValueDecoder.Scalar {}
extension UInt8: JSONValueDecoder.Scalar {}
extension UInt16: JSONValueDecoder.Scalar {}
extension UInt32: JSONValueDecoder.Scalar {}
extension UInt64: JSONValueDecoder.Scalar {}
@available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
extension Int128: JSONValueDecoder.Scalar {}
@available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
extension UInt128: JSONValueDecoder.Scalar {}

// MARK: - Messages

extension DecodingError {
    // A null where a value belongs is `valueNotFound`, as the `Decoder` contract defines; the rest are
    // type mismatches. Both read "expected integer, got string "abc"".
    static func mismatch(expected: String, got value: JSONValue, codingPath: [any CodingKey]) -> DecodingError {
        let context = DecodingError.Context(
            codingPath: codingPath,
            debugDescription: "expected \(expected), got \(value.briefDescription)"
        )
        if value == .null { return .valueNotFound(JSONValue.self, context) }
        return .typeMismatch(JSONValue.self, context)
    }
}
