import Core

/// Incremental TLS metadata parser for one connection: the record layer both ways, handshake messages
/// reassembled across records and segments, ClientHello/ServerHello (HelloRetryRequest included),
/// plaintext alerts, and the times that matter (hello, end of handshake, first application data).
/// Encrypted content is only counted. After a gap in a direction, that direction stops being parsed.
public final class TLSAnalyser {
    struct Side {
        var header: [UInt8] = []
        var recordType: UInt8 = 0
        var recordRemaining = 0
        var recordStart: Nanos = 0
        var handshake: [UInt8] = []
        var alertBytes: [UInt8] = []
        /// Sent ChangeCipherSpec: later handshake records from this side are encrypted.
        var changedCipher = false
        var encryptedRecords = 0
        var lost = false
        var bytes = 0
        var lastByte: Nanos?
        var firstApplicationData: Nanos?
        /// Decryption, when keys are known: the current protection, the record being collected,
        /// decrypted handshake bytes, and the application secret (for KeyUpdate).
        var protection: RecordProtection?
        var decryptThisRecord = false
        /// Keys are not known yet: the record is kept (bounded) until they arrive.
        var holdThisRecord = false
        var recordVersion: (UInt8, UInt8) = (3, 3)
        var body: [UInt8] = []
        var innerHandshake: [UInt8] = []
        var applicationSecret: [UInt8]?
        /// TLS 1.3 client with 0-RTT: handshake keys wait until EndOfEarlyData (or the first record they open).
        var pendingProtection: RecordProtection?
    }

    public static let maxRecordLength = (1 << 14) + 2048
    public static let maxHandshakeMessage = 1 << 17

    private var sides = [Side(), Side()]
    public private(set) var clientHello: ClientHello?
    /// Every ClientHello seen (a second follows a HelloRetryRequest), up to four.
    public private(set) var clientHellos: [ClientHello] = []
    public private(set) var serverHello: ServerHello?
    public private(set) var helloRetryRequest = false
    public private(set) var clientHelloTime: Nanos?
    public private(set) var serverHelloTime: Nanos?
    /// TLS 1.2: the server's Finished; TLS 1.3: the client's Finished.
    public private(set) var handshakeDoneTime: Nanos?
    public private(set) var alerts: [TLSAlert] = []
    public private(set) var weirds: [Weird] = []
    /// Whether the first bytes looked like TLS at all.
    public private(set) var isTLS = true

    /// Secrets for decryption; nil analyses metadata only.
    public let keyLog: KeyLog?
    /// Receives decrypted application data, in order, per direction.
    public var onPlaintext: ((_ direction: Direction, _ data: UnsafeRawBufferPointer, _ time: Nanos) -> Void)?
    /// Records decrypted, and records that could not be (no keys, unsupported cipher, bad tag).
    public private(set) var decryptedRecords = 0
    public private(set) var undecryptableRecords = 0
    /// Why records stay encrypted, when they do.
    public private(set) var undecryptableReason: String?
    /// The server's first certificate (DER): in the clear in TLS 1.2, decrypted in TLS 1.3.
    public private(set) var serverCertificate: [UInt8]?
    /// ALPN from EncryptedExtensions (TLS 1.3, with keys).
    public private(set) var encryptedALPN: String?
    /// Request/response exchanges estimated from the direction changes of application-data records,
    /// for HTTP/1.1 over TLS without keys.
    public private(set) var estimatedExchanges: [EstimatedExchange] = []
    private var cipher: CipherSpec?
    /// Late keys (a daemon following a key log that is written after the handshake): the setups
    /// still waiting, the key log generation last looked at, and the encrypted records held meanwhile.
    private var pendingTLS12Sides: Set<Int> = []
    private var pendingTLS13 = false
    private var seenKeyGeneration = 0
    private var held: [HeldRecord] = []
    private var heldBytes = 0
    public static let maxHeldBytes = 1 << 20
    /// Encrypted records dropped because keys did not arrive within the hold cap.
    public private(set) var droppedWhileWaitingForKeys = 0
    public var isWaitingForKeys: Bool { pendingTLS13 || !pendingTLS12Sides.isEmpty }

    /// The byte budget that handshake, record and held-record buffers draw from (shared by every parser
    /// of a pipeline), and what this connection counts in it now.
    private let budget: ParserBudget?
    private var charged = 0
    /// Directions given up because the shared budget was spent.
    public private(set) var budgetRefusals = 0

    public init(keyLog: KeyLog? = nil, budget: ParserBudget? = nil) {
        self.keyLog = keyLog
        self.budget = budget
    }

    deinit { budget?.adjust(by: -charged) }

    /// Brings this connection's count in the shared budget up to date (after buffers grew or were freed).
    @discardableResult
    private func recount() -> Int {
        guard let budget else { return 0 }
        var bytes = heldBytes
        for j in 0..<2 {
            bytes += sides[j].header.capacity + sides[j].handshake.capacity + sides[j].body.capacity
                + sides[j].innerHandshake.capacity + sides[j].alertBytes.capacity
        }
        budget.adjust(by: bytes - charged)
        charged = bytes
        return bytes
    }

    /// Counts this connection's buffers in the shared budget. When the budget is spent, side `k` (the one
    /// that grew) is given up and its buffers freed (`parser_memory_cap`); held records are dropped too.
    private func settle(_ k: Int) {
        guard let budget else { return }
        let bytes = recount()
        guard budget.isSpent, !sides[k].lost, bytes > 0 else { return }
        budget.refuse()
        budgetRefusals += 1
        note(.parserMemoryCap)
        if !held.isEmpty {
            droppedWhileWaitingForKeys += held.count
            held = []
            heldBytes = 0
        }
        sides[k].lost = true
        sides[k].handshake = []
        sides[k].body = []
        sides[k].innerHandshake = []
        sides[k].alertBytes = []
        sides[k].decryptThisRecord = false
        sides[k].holdThisRecord = false
        settle(k)
    }

    public var isDecrypting: Bool { sides[0].protection != nil || sides[1].protection != nil }

    public var clientBytes: Int { sides[0].bytes }
    public var serverBytes: Int { sides[1].bytes }
    public var clientEncryptedRecords: Int { sides[0].encryptedRecords }
    public var serverEncryptedRecords: Int { sides[1].encryptedRecords }
    public var lastByteTime: [Nanos?] { [sides[0].lastByte, sides[1].lastByte] }
    public var firstApplicationData: [Nanos?] { [sides[0].firstApplicationData, sides[1].firstApplicationData] }
    public var isTLS13: Bool { (serverHello?.selectedVersion).map { $0 == 0x0304 || ($0 >> 8) == 0x7F } ?? false }
    public var sawGap: Bool { sides[0].lost || sides[1].lost }

    /// Feeds bytes from the client (`.toServer`) or the server.
    public func deliver(_ direction: Direction, _ data: UnsafeRawBufferPointer, at time: Nanos) {
        let k = direction.rawValue
        sides[k].bytes += data.count
        sides[k].lastByte = time
        if sides[k].lost { return }
        var i = 0
        let n = data.count
        while i < n {
            if sides[k].recordRemaining == 0 {
                // Collect the 5-byte record header.
                if sides[k].header.isEmpty { sides[k].recordStart = time }
                let need = 5 - sides[k].header.count
                let take = min(need, n - i)
                sides[k].header.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[i..<(i + take)]))
                i += take
                guard sides[k].header.count == 5 else { break }
                let h = sides[k].header
                sides[k].header.removeAll(keepingCapacity: true)
                let type = h[0]
                let length = Int(h[3]) << 8 | Int(h[4])
                guard (20...24).contains(type), h[1] == 3 || (h[1] == 2 && h[2] == 0) else {
                    if clientHelloTime == nil { isTLS = false }
                    note(.tlsMalformedHandshake)
                    sides[k].lost = true
                    return
                }
                guard length <= Self.maxRecordLength else {
                    note(.tlsRecordTooLong)
                    sides[k].lost = true
                    return
                }
                if isWaitingForKeys, let keyLog, keyLog.generation != seenKeyGeneration { retryKeys() }
                sides[k].recordType = type
                sides[k].recordRemaining = length
                sides[k].recordVersion = (h[1], h[2])
                recordStarted(k, type: type, time: sides[k].recordStart)
                let protected = type == 23 || ((type == 22 || type == 21) && !handshakeIsPlaintext(k))
                sides[k].decryptThisRecord = sides[k].protection != nil && protected
                sides[k].holdThisRecord = sides[k].protection == nil && protected && isWaitingForKeys
                sides[k].body.removeAll(keepingCapacity: true)
                if length == 0 { continue }
            }
            let take = min(sides[k].recordRemaining, n - i)
            let fragment = UnsafeRawBufferPointer(rebasing: data[i..<(i + take)])
            i += take
            sides[k].recordRemaining -= take
            if sides[k].decryptThisRecord || sides[k].holdThisRecord {
                let before = sides[k].body.capacity
                sides[k].body.append(contentsOf: fragment)
                if sides[k].body.capacity != before { settle(k); if sides[k].lost { return } }
                if sides[k].recordRemaining == 0 {
                    if sides[k].decryptThisRecord { decryptRecord(k, time: sides[k].recordStart) } else { hold(k) }
                }
            } else {
                recordBytes(k, fragment, time: time)
            }
        }
    }

    /// Bytes lost in one direction: its records can no longer be followed.
    public func gap(_ direction: Direction, length: Int) {
        let k = direction.rawValue
        sides[k].bytes += length
        if !sides[k].lost {
            sides[k].lost = true
            note(.tlsGap)
        }
    }

    private func note(_ w: Weird) {
        if !weirds.contains(w) { weirds.append(w) }
    }

    /// Whether handshake records from side `k` are still plaintext.
    private func handshakeIsPlaintext(_ k: Int) -> Bool {
        if k == 0 {
            // Until a real ServerHello arrives nothing can be encrypted yet: a second ClientHello (after a
            // HelloRetryRequest, or a retry after a compatibility CCS) is still plaintext.
            return !sides[0].changedCipher || serverHello == nil || serverHello?.isHelloRetryRequest == true
        }
        // The server encrypts everything after ServerHello in TLS 1.3, and after its CCS in 1.2.
        if isTLS13 && serverHello?.isHelloRetryRequest == false { return false }
        return !sides[1].changedCipher
    }

    private func recordStarted(_ k: Int, type: UInt8, time: Nanos) {
        switch type {
        case 20:
            sides[k].changedCipher = true
            if !isTLS13 { setUpTLS12Keys(k) }
        case 22:
            if !handshakeIsPlaintext(k) {
                sides[k].encryptedRecords += 1
                // TLS 1.2: the server's Finished ends the handshake (full and abbreviated).
                if k == 1 && handshakeDoneTime == nil && !isTLS13 { handshakeDoneTime = time }
            }
        case 23:
            sides[k].encryptedRecords += 1
            noteApplicationRecord(k, length: sides[k].recordRemaining, time: time)
            if isTLS13 {
                if k == 0 {
                    if handshakeDoneTime == nil && serverHello != nil { handshakeDoneTime = time }
                    else if sides[0].firstApplicationData == nil && handshakeDoneTime != nil { sides[0].firstApplicationData = time }
                } else if handshakeDoneTime != nil && sides[1].firstApplicationData == nil {
                    sides[1].firstApplicationData = time
                }
            } else if sides[k].firstApplicationData == nil {
                sides[k].firstApplicationData = time
            }
        default:
            break
        }
    }

    private func recordBytes(_ k: Int, _ fragment: UnsafeRawBufferPointer, time: Nanos) {
        switch sides[k].recordType {
        case 22 where handshakeIsPlaintext(k):
            let before = sides[k].handshake.capacity
            sides[k].handshake.append(contentsOf: fragment)
            if sides[k].handshake.capacity != before { settle(k); if sides[k].lost { return } }
            parseHandshakeMessages(k, time: sides[k].recordStart)
        case 21 where handshakeIsPlaintext(k) || (k == 1 && serverHello == nil):
            sides[k].alertBytes.append(contentsOf: fragment)
            while sides[k].alertBytes.count >= 2 {
                let a = TLSAlert(fromClient: k == 0, level: sides[k].alertBytes[0], description: sides[k].alertBytes[1],
                                 time: sides[k].recordStart)
                alerts.append(a)
                sides[k].alertBytes.removeFirst(2)
            }
        default:
            break
        }
    }

    private func parseHandshakeMessages(_ k: Int, time: Nanos) {
        while sides[k].handshake.count >= 4 {
            let hs = sides[k].handshake
            let type = hs[0]
            let length = Int(hs[1]) << 16 | Int(hs[2]) << 8 | Int(hs[3])
            guard length <= Self.maxHandshakeMessage else {
                note(.tlsHandshakeTooLong)
                sides[k].lost = true
                sides[k].handshake = []
                return
            }
            guard hs.count >= 4 + length else { return }
            hs.withUnsafeBytes { raw in
                let body = UnsafeRawBufferPointer(rebasing: raw[4..<(4 + length)])
                if type == 1 && k == 0 {
                    if let ch = TLSHelloParser.clientHello(body) {
                        // The first ClientHello names the connection and gives its JA4; a second one
                        // (after HelloRetryRequest) only confirms it.
                        if clientHello == nil {
                            clientHelloTime = time
                            clientHello = ch
                        }
                        if clientHellos.count < 4 { clientHellos.append(ch) }
                        setUpEarlyDataKeys()
                    } else {
                        note(.tlsMalformedHandshake)
                    }
                } else if type == 11 && k == 1 {
                    serverCertificate = serverCertificate ?? TLSHelloParser.firstCertificate(body, tls13: false)
                } else if type == 2 && k == 1 {
                    if let sh = TLSHelloParser.serverHello(body) {
                        if sh.isHelloRetryRequest { helloRetryRequest = true }
                        if serverHelloTime == nil || serverHello?.isHelloRetryRequest == true { serverHelloTime = time }
                        serverHello = sh
                        if isTLS13 && !sh.isHelloRetryRequest { setUpTLS13HandshakeKeys() }
                    } else {
                        note(.tlsMalformedHandshake)
                    }
                }
            }
            sides[k].handshake.removeFirst(4 + length)
            // Nothing after the ServerHello that we read is needed from a TLS 1.3 server.
            if k == 1 && isTLS13 && serverHello?.isHelloRetryRequest == false { sides[k].handshake = []; return }
        }
    }
}

/// Pure parsers for hello message bodies (after the 4-byte handshake header).
public enum TLSHelloParser {
    static let helloRetryRandom: [UInt8] = [
        0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
        0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
    ]

    public static func clientHello(_ body: UnsafeRawBufferPointer) -> ClientHello? {
        var c = ByteCursor(body)
        var ch = ClientHello()
        guard let v = c.u16(), let random = c.slice(32), let sidLen = c.u8(), c.skip(Int(sidLen)),
              let csLen = c.u16(), let cs = c.slice(Int(csLen)), let compLen = c.u8(), c.skip(Int(compLen))
        else { return nil }
        ch.legacyVersion = v
        ch.random = Array(random)
        var cc = ByteCursor(cs)
        while let suite = cc.u16() { ch.cipherSuites.append(suite) }
        if c.remaining == 0 { return ch } // no extensions (old clients)
        // An extension block that runs past the message is malformed, not "no extensions": half a hello
        // would give a wrong JA4 and no SNI.
        guard let extLen = c.u16(), let exts = c.slice(Int(extLen)) else { return nil }
        var e = ByteCursor(exts)
        while let type = e.u16() {
            guard let len = e.u16(), let data = e.slice(Int(len)) else { return nil }
            ch.extensions.append(type)
            var d = ByteCursor(data)
            switch type {
            case 0x0000:
                guard let _ = d.u16() else { break }
                while let nameType = d.u8(), let nameLen = d.u16(), let name = d.slice(Int(nameLen)) {
                    if nameType == 0 && ch.serverName == nil { ch.serverName = name.text }
                }
            case 0x0010:
                guard let _ = d.u16() else { break }
                while let l = d.u8(), let proto = d.slice(Int(l)) { ch.alpn.append(Array(proto)) }
            case 0x002B:
                guard let _ = d.u8() else { break }
                while let sv = d.u16() { ch.supportedVersions.append(sv) }
            case 0x000D:
                guard let _ = d.u16() else { break }
                while let alg = d.u16() { ch.signatureAlgorithms.append(alg) }
            case 0xFE0D:
                ch.offersECH = true
            default:
                break
            }
        }
        return ch
    }

    public static func serverHello(_ body: UnsafeRawBufferPointer) -> ServerHello? {
        var c = ByteCursor(body)
        var sh = ServerHello()
        guard let v = c.u16(), let random = c.slice(32), let sidLen = c.u8(), c.skip(Int(sidLen)),
              let suite = c.u16(), let _ = c.u8() else { return nil }
        sh.legacyVersion = v
        sh.cipherSuite = suite
        sh.isHelloRetryRequest = random.elementsEqual(helloRetryRandom)
        sh.random = Array(random)
        if c.remaining == 0 { return sh }
        guard let extLen = c.u16(), let exts = c.slice(Int(extLen)) else { return nil }
        var e = ByteCursor(exts)
        while let type = e.u16() {
            guard let len = e.u16(), let data = e.slice(Int(len)) else { return nil }
            var d = ByteCursor(data)
            switch type {
            case 0x002B:
                sh.selectedVersion = d.u16()
            case 0x0010:
                if let _ = d.u16(), let l = d.u8(), let proto = d.slice(Int(l)) { sh.alpn = proto.text }
            default:
                break
            }
        }
        return sh
    }
}

// MARK: - Decryption with a key log

extension TLSAnalyser {
    private func noteUndecryptable(_ reason: String) {
        if undecryptableReason == nil { undecryptableReason = reason }
    }

    private func spec() -> CipherSpec? {
        if let cipher { return cipher }
        guard let suite = serverHello?.cipherSuite else { return nil }
        cipher = CipherSpec.forSuite(suite)
        if cipher == nil { noteUndecryptable("cipher suite \(TLSNames.cipher(suite)) is not decrypted (CBC or unsupported)") }
        return cipher
    }

    /// TLS 1.2: at each side's ChangeCipherSpec, its records become protected by the key block.
    fileprivate func setUpTLS12Keys(_ k: Int) {
        guard let keyLog, let ch = clientHello, let sh = serverHello else { return }
        guard let spec = spec() else { return }
        guard let master = keyLog.secret(.clientRandom, clientRandom: ch.random) else {
            pendingTLS12Sides.insert(k)
            seenKeyGeneration = keyLog.generation
            return
        }
        pendingTLS12Sides.remove(k)
        let keys = TLSKeys.tls12(spec: spec, masterSecret: master, clientRandom: ch.random, serverRandom: sh.random)
        sides[k].protection = k == 0 ? keys.client : keys.server
    }

    /// TLS 1.3: after ServerHello both sides switch to handshake traffic keys.
    fileprivate func setUpTLS13HandshakeKeys() {
        guard let keyLog, let ch = clientHello, let spec = spec() else { return }
        guard let c = keyLog.secret(.clientHandshakeTrafficSecret, clientRandom: ch.random),
              let s = keyLog.secret(.serverHandshakeTrafficSecret, clientRandom: ch.random) else {
            pendingTLS13 = true
            seenKeyGeneration = keyLog.generation
            return
        }
        pendingTLS13 = false
        let clientHandshake = TLSKeys.tls13(spec: spec, trafficSecret: c)
        if sides[0].protection != nil {
            sides[0].pendingProtection = clientHandshake // 0-RTT keys stay until EndOfEarlyData
        } else {
            sides[0].protection = clientHandshake
        }
        sides[1].protection = TLSKeys.tls13(spec: spec, trafficSecret: s)
    }

    /// 0-RTT: early data is protected by the early traffic secret, with the resumed session's cipher
    /// suite, which is not yet known: take the first offered suite we can decrypt.
    fileprivate func setUpEarlyDataKeys() {
        guard let keyLog, let ch = clientHello, sides[0].protection == nil, serverHello == nil,
              let secret = keyLog.secret(.clientEarlyTrafficSecret, clientRandom: ch.random),
              let suite = ch.cipherSuites.first(where: { ($0 >> 8) == 0x13 && CipherSpec.forSuite($0) != nil }),
              let spec = CipherSpec.forSuite(suite) else { return }
        sides[0].protection = TLSKeys.tls13(spec: spec, trafficSecret: secret)
    }

    /// Keeps an encrypted record until its keys arrive, within the hold cap.
    private func hold(_ k: Int) {
        let body = sides[k].body
        guard heldBytes + body.count <= Self.maxHeldBytes else {
            droppedWhileWaitingForKeys += 1 + held.count
            held = []
            heldBytes = 0
            pendingTLS12Sides = []
            pendingTLS13 = false
            noteUndecryptable("no key for this connection in the key log")
            recount()
            return
        }
        held.append(HeldRecord(side: k, type: sides[k].recordType, version: sides[k].recordVersion, body: body,
                               time: sides[k].recordStart))
        heldBytes += body.count
        settle(k)
    }

    /// Looks for keys again (the key log grew); once found, held records are decrypted in order.
    public func retryKeys() {
        guard let keyLog, isWaitingForKeys else { return }
        seenKeyGeneration = keyLog.generation
        if pendingTLS13 { setUpTLS13HandshakeKeys() }
        for k in pendingTLS12Sides.sorted() { setUpTLS12Keys(k) }
        guard !held.isEmpty, sides[0].protection != nil || sides[1].protection != nil else { return }
        let records = held
        held = []
        heldBytes = 0
        let saved = (sides[0].recordType, sides[0].recordVersion, sides[0].body, sides[1].recordType, sides[1].recordVersion, sides[1].body)
        for r in records where sides[r.side].protection != nil {
            sides[r.side].recordType = r.type
            sides[r.side].recordVersion = r.version
            sides[r.side].body = r.body
            decryptRecord(r.side, time: r.time)
        }
        (sides[0].recordType, sides[0].recordVersion, sides[0].body, sides[1].recordType, sides[1].recordVersion, sides[1].body) = saved
        // A side given up while the held records were replayed keeps nothing.
        for k in 0..<2 where sides[k].lost { sides[k].body = [] }
        recount()
    }

    /// At the end of the connection: whatever still waits for keys is undecryptable.
    public func finishWaitingForKeys() {
        retryKeys()
        if isWaitingForKeys || !held.isEmpty {
            noteUndecryptable("no key for this connection in the key log")
            undecryptableRecords += held.count
            held = []
            heldBytes = 0
            recount()
        }
    }

    private func switchToApplicationKeys(_ k: Int) {
        guard let keyLog, let ch = clientHello, let spec = spec() else { return }
        let label: KeyLog.Label = k == 0 ? .clientTrafficSecret0 : .serverTrafficSecret0
        guard let secret = keyLog.secret(label, clientRandom: ch.random) else {
            sides[k].protection = nil
            noteUndecryptable("no application traffic secret in the key log")
            return
        }
        sides[k].applicationSecret = secret
        sides[k].protection = TLSKeys.tls13(spec: spec, trafficSecret: secret)
    }

    fileprivate func decryptRecord(_ k: Int, time: Nanos) {
        guard var protection = sides[k].protection else { return }
        let type = sides[k].recordType
        let plain = protection.open(type: type, version: sides[k].recordVersion, body: sides[k].body)
        sides[k].protection = protection
        guard let plaintext = plain else {
            if k == 0, var pending = sides[0].pendingProtection,
               let p = pending.open(type: type, version: sides[k].recordVersion, body: sides[k].body) {
                // The server declined early data: the client went straight to its handshake keys.
                sides[0].protection = pending
                sides[0].pendingProtection = nil
                handleDecrypted(k, p, innerTLS13: true, time: time)
                return
            }
            undecryptableRecords += 1
            noteUndecryptable("records failed authentication (wrong key or damaged)")
            // A TLS 1.3 client may send early data we cannot open; anything else means the keys are wrong.
            if !(isTLS13 && k == 0 && handshakeDoneTime == nil) { sides[k].protection = nil }
            return
        }
        handleDecrypted(k, plaintext, innerTLS13: protection.tls13, time: time)
    }

    private func handleDecrypted(_ k: Int, _ decrypted: [UInt8], innerTLS13: Bool, time: Nanos) {
        var plaintext = decrypted
        let type = sides[k].recordType
        decryptedRecords += 1
        var innerType = type
        if innerTLS13 {
            while let last = plaintext.last, last == 0 { plaintext.removeLast() }
            guard let t = plaintext.popLast() else { return }
            innerType = t
        }
        switch innerType {
        case 23:
            plaintext.withUnsafeBytes { onPlaintext?(Direction(rawValue: k) ?? .toServer, $0, time) }
        case 21:
            var i = 0
            while i + 1 < plaintext.count {
                var a = TLSAlert(fromClient: k == 0, level: plaintext[i], description: plaintext[i + 1], time: time)
                a.decrypted = true
                alerts.append(a)
                i += 2
            }
        case 22 where innerTLS13:
            let before = sides[k].innerHandshake.capacity
            sides[k].innerHandshake += plaintext
            if sides[k].innerHandshake.capacity != before { settle(k); if sides[k].lost { return } }
            parseInnerHandshake(k)
        default:
            break // TLS 1.2 Finished, or padding records
        }
    }

    /// Decrypted TLS 1.3 handshake messages: EncryptedExtensions (ALPN), Finished, KeyUpdate.
    private func parseInnerHandshake(_ k: Int) {
        while sides[k].innerHandshake.count >= 4 {
            let hs = sides[k].innerHandshake
            let length = Int(hs[1]) << 16 | Int(hs[2]) << 8 | Int(hs[3])
            guard length <= Self.maxHandshakeMessage else { sides[k].innerHandshake = []; return }
            guard hs.count >= 4 + length else { return }
            let type = hs[0]
            if type == 8 || type == 11 {
                hs.withUnsafeBytes { raw in
                    let body = UnsafeRawBufferPointer(rebasing: raw[4..<(4 + length)])
                    if type == 8 { encryptedALPN = TLSHelloParser.alpnFromExtensions(body) }
                    if type == 11 && k == 1 { serverCertificate = serverCertificate ?? TLSHelloParser.firstCertificate(body, tls13: true) }
                }
            }
            sides[k].innerHandshake.removeFirst(4 + length)
            if type == 5, let pending = sides[k].pendingProtection { // EndOfEarlyData
                sides[k].protection = pending
                sides[k].pendingProtection = nil
                continue
            }
            if type == 20 {
                switchToApplicationKeys(k)
                sides[k].innerHandshake = []
                return
            }
            if type == 24, let secret = sides[k].applicationSecret, let spec = cipher {
                let next = TLSKeys.nextTrafficSecret(sha384: spec.sha384, secret)
                sides[k].applicationSecret = next
                sides[k].protection = TLSKeys.tls13(spec: spec, trafficSecret: next)
            }
        }
    }
}

extension TLSHelloParser {
    /// The first (leaf) certificate of a Certificate message body; TLS 1.3 adds a request context
    /// before the list and extensions after each entry.
    static func firstCertificate(_ body: UnsafeRawBufferPointer, tls13: Bool) -> [UInt8]? {
        var c = ByteCursor(body)
        if tls13 { guard let ctx = c.u8(), c.skip(Int(ctx)) else { return nil } }
        guard let _ = c.u24(), let len = c.u24(), len > 0, let der = c.slice(len) else { return nil }
        return Array(der)
    }

    /// The selected ALPN protocol in an EncryptedExtensions body.
    static func alpnFromExtensions(_ body: UnsafeRawBufferPointer) -> String? {
        var c = ByteCursor(body)
        guard let len = c.u16(), let exts = c.slice(Int(len)) else { return nil }
        var e = ByteCursor(exts)
        while let type = e.u16(), let l = e.u16(), let data = e.slice(Int(l)) {
            if type == 0x0010 {
                var d = ByteCursor(data)
                if let _ = d.u16(), let n = d.u8(), let proto = d.slice(Int(n)) { return proto.text }
            }
        }
        return nil
    }
}

struct HeldRecord {
    var side: Int
    var type: UInt8
    var version: (UInt8, UInt8)
    var body: [UInt8]
    var time: Nanos
}

/// One request/response exchange guessed from encrypted records: the client's burst, then the server's.
public struct EstimatedExchange: Sendable {
    public var start: Nanos
    public var requestEnd: Nanos
    public var responseStart: Nanos?
    public var responseEnd: Nanos?
    public var requestBytes: Int
    public var responseBytes = 0
}

extension TLSAnalyser {
    /// Application data records after the handshake, by direction: a client record after server
    /// records starts a new exchange. Server records before any request (TLS 1.3 session tickets)
    /// are not counted.
    fileprivate func noteApplicationRecord(_ k: Int, length: Int, time: Nanos) {
        guard handshakeDoneTime != nil, !isDecrypting else { return }
        // TLS 1.3: the client's first encrypted record is its Finished, not a request; and a 19-byte
        // record (2 alert bytes, the inner type and a 16-byte tag) is an encrypted alert such as close_notify.
        if isTLS13 && k == 0 && sides[0].encryptedRecords <= 1 { return }
        if isTLS13 && length == 19 { return }
        if k == 0 {
            if var last = estimatedExchanges.last, last.responseStart == nil {
                last.requestEnd = time
                last.requestBytes += length
                estimatedExchanges[estimatedExchanges.count - 1] = last
            } else {
                estimatedExchanges.append(EstimatedExchange(start: time, requestEnd: time, requestBytes: length))
            }
        } else if var last = estimatedExchanges.last {
            if last.responseStart == nil { last.responseStart = time }
            last.responseEnd = time
            last.responseBytes += length
            estimatedExchanges[estimatedExchanges.count - 1] = last
        }
    }

    /// Whether the connection can only be HTTP/1.1 (so direction changes mark exchanges): the server
    /// chose http/1.1, or the client offered no h2.
    public var isHTTP1OnlyConnection: Bool {
        if let alpn = serverHello?.alpn ?? encryptedALPN { return alpn == "http/1.1" }
        guard let offered = clientHello?.alpnNames else { return true }
        return !offered.contains("h2")
    }
}

