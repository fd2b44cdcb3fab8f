import Testing

@testable import TulipDaemon

struct JSONValueDecoderTests {
    struct Item: Decodable, Equatable {
        var name: String
        var weight: Double?
    }

    enum Format: String, Decodable {
        case rfc3339
        case unix
    }

    struct Options: Decodable, Equatable {
        var format: Format
        var items: [Item]
        var limits: [String: UInt16]
        var verbose: Bool?
        var nested: Nested?

        struct Nested: Decodable, Equatable {
            var depth: Int8
        }
    }

    static func decode<T: Decodable>(
        _ type: T.Type,
        _ text: String,
        keyPath: String = "listeners[3].options"
    ) throws(ConfigurationError) -> T {
        let node = try JSONParser().parse(text.utf8)
        return try JSONValueDecoder().decode(type, from: node, keyPath: keyPath)
    }

    static func decodingError<T: Decodable>(
        _ type: T.Type,
        _ text: String,
        keyPath: String = "listeners[3].options"
    ) throws -> ConfigurationError {
        try #require(throws: ConfigurationError.self) { try Self.decode(type, text, keyPath: keyPath) }
    }

    // MARK: - Decoding

    @Test
    func decodesNestedStructuresArraysDictionariesAndOptionals() throws {
        let text = """
            {
              "format": "unix",
              "items": [{"name": "a", "weight": 1.5}, {"name": "b", "weight": null}, {"name": "c"}],
              "limits": {"x": 1, "y.z": 65535},
              "nested": {"depth": -128}
            }
            """
        let options = try Self.decode(Options.self, text)
        let expected = Options(
            format: .unix,
            items: [Item(name: "a", weight: 1.5), Item(name: "b", weight: nil), Item(name: "c", weight: nil)],
            limits: ["x": 1, "y.z": 65535],
            verbose: nil,
            nested: Options.Nested(depth: -128)
        )
        #expect(options == expected)
    }

    @Test
    func decodesEveryIntegerTypeAtItsLimits() throws {
        struct Integers: Decodable, Equatable {
            var i: Int
            var i8: Int8
            var i16: Int16
            var i32: Int32
            var i64: Int64
            var u: UInt
            var u8: UInt8
            var u16: UInt16
            var u32: UInt32
            var u64: UInt64
        }
        let text = """
            {"i": -9223372036854775808, "i8": -128, "i16": 32767, "i32": -2147483648, "i64": 9223372036854775807,
             "u": 0, "u8": 255, "u16": 65535, "u32": 4294967295, "u64": 18446744073709551615}
            """
        let integers = try Self.decode(Integers.self, text)
        #expect(
            integers
                == Integers(
                    i: .min,
                    i8: .min,
                    i16: .max,
                    i32: .min,
                    i64: .max,
                    u: 0,
                    u8: .max,
                    u16: .max,
                    u32: .max,
                    u64: .max
                )
        )
    }

    @Test
    func decodesScalarsAtTheTopLevelAndInArrays() throws {
        #expect(try Self.decode([Int].self, "[1, 2e2, 3.0]") == [1, 200, 3])
        #expect(try Self.decode([Int?].self, "[1, null]") == [1, nil])
        #expect(try Self.decode(Float.self, "0.5") == 0.5)
        #expect(try Self.decode(String.self, #""é\n""#) == "é\n")
        #expect(try Self.decode([[Bool]].self, "[[true], []]") == [[true], []])
        #expect(try Self.decode(Int?.self, "null") == nil)
    }

    @Test
    func userInfoReachesInitializers() throws {
        struct Probe: Decodable {
            var seen: String?
            init(from decoder: any Decoder) throws {
                self.seen = decoder.userInfo[Self.key] as? String
            }
            static let key = CodingUserInfoKey(rawValue: "probe")!  // a non-empty raw value always works
        }
        var decoder = JSONValueDecoder()
        decoder.userInfo[Probe.key] = "hello"
        let probe = try decoder.decode(Probe.self, from: .null, keyPath: "x")
        #expect(probe.seen == "hello")
    }

    // MARK: - Unknown keys

    @Test
    func rejectsUnknownKeyNamingItsFullKeyPath() throws {
        let text = """
            {
              "format": "unix", "items": [], "limits": {},
              "formt": "rfc3339"
            }
            """
        let error = try Self.decodingError(Options.self, text)
        #expect(error.code == .unknownKey)
        #expect(error.keyPath == "listeners[3].options.formt")
        #expect(error.message == "unknown key 'formt'")
        #expect(error.line == 3)
        #expect(error.column == 3)
        #expect(error.description == "3:3: listeners[3].options.formt: unknown key 'formt'")
    }

    @Test
    func rejectsUnknownKeyInsideArrayElement() throws {
        let text = #"{"format": "unix", "limits": {}, "items": [{"name": "a"}, {"name": "b", "wieght": 2}]}"#
        let error = try Self.decodingError(Options.self, text)
        #expect(error.code == .unknownKey)
        #expect(error.keyPath == "listeners[3].options.items[1].wieght")
        #expect(error.column == 73)
    }

    @Test
    func reportsTheEarliestOfSeveralUnknownKeys() throws {
        let text = #"{"format": "unix", "items": [{"name": "a", "zz": 1}], "limits": {}, "aa": 2}"#
        let error = try Self.decodingError(Options.self, text)
        #expect(error.keyPath == "listeners[3].options.items[0].zz")
    }

    @Test
    func keysAskedAboutWithDecodeIfPresentAreKnown() throws {
        struct Sparse: Decodable {
            var a: Int?
            var b: String?
        }
        let sparse = try Self.decode(Sparse.self, #"{"b": "x"}"#)
        #expect(sparse.a == nil)
        #expect(sparse.b == "x")
        let error = try Self.decodingError(Sparse.self, #"{"b": "x", "c": 1}"#)
        #expect(error.keyPath == "listeners[3].options.c")
    }

    @Test
    func quotesDictionaryKeysThatAreNotIdentifiers() throws {
        let error = try Self.decodingError([String: UInt8].self, #"{"ok": 1, "a.b": 256}"#, keyPath: "opts")
        #expect(error.code == .invalidValue)
        #expect(error.keyPath == #"opts["a.b"]"#)
        #expect(error.message == "256 is out of range for UInt8 (0...255)")
    }

    // MARK: - Missing keys and type mismatches

    @Test
    func reportsMissingKeyAtItsObject() throws {
        let text = """
            {"format": "unix", "limits": {},
             "items": [{"name": "a"}, {"weight": 2}]}
            """
        let error = try Self.decodingError(Options.self, text)
        #expect(error.code == .missingKey)
        #expect(error.keyPath == "listeners[3].options.items[1].name")
        #expect(error.message == "missing required key 'name'")
        #expect(error.line == 2)
        #expect(error.column == 27)
    }

    struct MismatchCase: Sendable, CustomTestStringConvertible {
        var text: String
        var keyPath: String
        var column: Int
        var message: String
        var testDescription: String { self.message }
    }

    static let mismatchCases: [MismatchCase] = [
        MismatchCase(
            text: #"{"format": "unix", "items": [], "limits": {"x": "7"}}"#,
            keyPath: "listeners[3].options.limits.x",
            column: 49,
            message: #"expected integer, got string "7""#
        ),
        MismatchCase(
            text: #"{"format": "unix", "items": [{"name": 5}], "limits": {}}"#,
            keyPath: "listeners[3].options.items[0].name",
            column: 39,
            message: "expected string, got number 5"
        ),
        MismatchCase(
            text: #"{"format": "unix", "items": [{"name": null}], "limits": {}}"#,
            keyPath: "listeners[3].options.items[0].name",
            column: 39,
            message: "expected string, got null"
        ),
        MismatchCase(
            text: #"{"format": "unix", "items": {}, "limits": {}}"#,
            keyPath: "listeners[3].options.items",
            column: 29,
            message: "expected array, got object"
        ),
        MismatchCase(
            text: #"{"format": "unix", "items": [3], "limits": {}}"#,
            keyPath: "listeners[3].options.items[0]",
            column: 30,
            message: "expected object, got number 3"
        ),
        MismatchCase(
            text: #"{"format": "unix", "items": [], "limits": {}, "verbose": "yes"}"#,
            keyPath: "listeners[3].options.verbose",
            column: 58,
            message: #"expected boolean, got string "yes""#
        ),
        MismatchCase(
            text: #"{"format": "unix", "items": [], "limits": {}, "nested": {"depth": 1.5}}"#,
            keyPath: "listeners[3].options.nested.depth",
            column: 67,
            message: "expected integer, got number 1.5"
        ),
    ]

    @Test(arguments: Self.mismatchCases)
    func reportsTypeMismatchWithExpectedAndActualType(_ mismatch: MismatchCase) throws {
        let error = try Self.decodingError(Options.self, mismatch.text)
        #expect(error.code == .typeMismatch)
        #expect(error.keyPath == mismatch.keyPath)
        #expect(error.message == mismatch.message)
        #expect(error.line == 1)
        #expect(error.column == mismatch.column)
    }

    @Test
    func reportsMismatchOfTheRootValueAtTheGivenLocation() throws {
        let location = JSONValue.Location(line: 7, column: 20)
        let error = try #require(throws: ConfigurationError.self) {
            try JSONValueDecoder().decode(
                Options.self,
                from: .string("x"),
                keyPath: "listeners[0].options",
                location: location
            )
        }
        #expect(error.code == .typeMismatch)
        #expect(error.keyPath == "listeners[0].options")
        #expect(error.message == #"expected object, got string "x""#)
        #expect(error.line == 7)
        #expect(error.column == 20)
    }

    // MARK: - Integer ranges

    struct RangeCase: Sendable, CustomTestStringConvertible {
        var literal: String
        var type: any (Decodable & Sendable).Type
        var message: String?
        var testDescription: String { "\(self.literal) as \(self.type)" }
    }

    static let rangeCases: [RangeCase] = [
        RangeCase(literal: "256", type: UInt8.self, message: "256 is out of range for UInt8 (0...255)"),
        RangeCase(literal: "-1", type: UInt.self, message: "-1 is out of range for UInt (0...18446744073709551615)"),
        RangeCase(literal: "-129", type: Int8.self, message: "-129 is out of range for Int8 (-128...127)"),
        RangeCase(literal: "65536", type: UInt16.self, message: "65536 is out of range for UInt16 (0...65535)"),
        RangeCase(
            literal: "9223372036854775808",
            type: Int64.self,
            message: "9223372036854775808 is out of range for Int64 (-9223372036854775808...9223372036854775807)"
        ),
        RangeCase(
            literal: "1e20",
            type: Int64.self,
            message: "1e20 is out of range for Int64 (-9223372036854775808...9223372036854775807)"
        ),
        RangeCase(literal: "1e400", type: Double.self, message: "1e400 is out of range for Double"),
        RangeCase(literal: "1e39", type: Float.self, message: "1e39 is out of range for Float"),
        RangeCase(literal: "-0", type: UInt8.self, message: nil),
        RangeCase(literal: "2.55e2", type: UInt8.self, message: nil),
    ]

    @Test(arguments: Self.rangeCases)
    func checksIntegerAndFloatingPointRanges(_ range: RangeCase) throws {
        let text = "{\"value\": \(range.literal)}"
        do throws(ConfigurationError) {
            _ = try Self.decodeValue(range.type, text)
            #expect(range.message == nil, "decoding succeeded")
        } catch {
            #expect(error.code == .invalidValue)
            #expect(error.message == range.message)
            #expect(error.keyPath == "opts.value")
            #expect(error.column == 11)
        }
    }

    struct Wrapper<Value: Decodable>: Decodable {
        var value: Value
    }

    private static func decodeValue<T: Decodable>(_ type: T.Type, _ text: String) throws(ConfigurationError) -> T {
        try Self.decode(Wrapper<T>.self, text, keyPath: "opts").value
    }

    // MARK: - Errors thrown by initializers

    @Test
    func convertsInvalidRawValueToInvalidValueError() throws {
        let error = try Self.decodingError(Options.self, #"{"format": "iso", "items": [], "limits": {}}"#)
        #expect(error.code == .invalidValue)
        #expect(error.keyPath == "listeners[3].options.format")
        #expect(error.column == 12)
        #expect(error.message == "Cannot initialize Format from invalid String value iso")
    }

    @Test
    func convertsValidationErrorsThrownByTheOptionsType() throws {
        struct Port: Decodable {
            var port: Int
            enum CodingKeys: CodingKey { case port }
            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                self.port = try container.decode(Int.self, forKey: .port)
                guard self.port != 0 else {
                    throw DecodingError.dataCorruptedError(
                        forKey: .port,
                        in: container,
                        debugDescription: "port 0 is not allowed here"
                    )
                }
            }
        }
        let error = try Self.decodingError(Port.self, "{\n  \"port\": 0\n}")
        #expect(error.code == .invalidValue)
        #expect(error.keyPath == "listeners[3].options.port")
        #expect(error.message == "port 0 is not allowed here")
        #expect(error.line == 2)
        #expect(error.column == 11)
    }

    @Test
    func reportsArrayThatEndsTooEarly() throws {
        struct Pair: Decodable {
            var first: Int
            var second: Int
            init(from decoder: any Decoder) throws {
                var container = try decoder.unkeyedContainer()
                self.first = try container.decode(Int.self)
                self.second = try container.decode(Int.self)
            }
        }
        let error = try Self.decodingError(Pair.self, "[1]", keyPath: "pair")
        #expect(error.code == .invalidValue)
        #expect(error.keyPath == "pair[1]")
        #expect(error.message == "expected more than 1 element in array")
        #expect(error.column == 1)
    }

    // MARK: - Listener options

    @Test
    func decodesAbsentListenerOptionsAsAnEmptyObject() throws {
        struct AllOptional: Decodable { var format: String? }
        struct Required: Decodable { var format: String }
        let listener = ListenerConfiguration(
            name: "daytime",
            protocolName: "daytime",
            endpoint: .tcp(TCPEndpoint(port: 13)),
            keyPath: "listeners[6]",
            locations: ListenerConfiguration.Locations(listener: JSONValue.Location(line: 30, column: 5))
        )
        #expect(try listener.decodeOptions(as: AllOptional.self).format == nil)
        let error = try #require(throws: ConfigurationError.self) { try listener.decodeOptions(as: Required.self) }
        #expect(error.code == .missingKey)
        #expect(error.keyPath == "listeners[6].options.format")
        #expect(error.line == 30)
    }
}

struct JSONValueDecoderEmptyTypeTests {
    struct Empty: Decodable {}

    @Test func anEmptyTypeRejectsEveryKeyOfItsObject() throws {
        let node = try JSONParser().parse(Array(#"{"bogus": true}"#.utf8))
        #expect(throws: ConfigurationError.self) {
            _ = try JSONValueDecoder().decode(Empty.self, from: node, keyPath: "listeners[0].options")
        }
        do {
            _ = try JSONValueDecoder().decode(Empty.self, from: node, keyPath: "listeners[0].options")
        } catch {
            #expect(error.code == .unknownKey)
            #expect(error.keyPath == "listeners[0].options.bogus")
        }
        let empty = try JSONParser().parse(Array("{}".utf8))
        _ = try JSONValueDecoder().decode(Empty.self, from: empty, keyPath: "x")
    }
}
