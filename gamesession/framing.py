"""The two TCP framings, as mixins that turn bytes into whole frames.

``int16``: Int16StringReceiver, a 2-byte big-endian length then the frame.
``line``: LineReceiver, the frame then ``\\n`` (a trailing ``\\r`` is ignored).
Both deliver ``frameReceived(frame)``, call ``frameTooLong()`` for oversize
input and offer ``sendFrame(frame)``; the messages are the same either way.
"""

from twisted.protocols.basic import Int16StringReceiver, LineReceiver

from gamesession.protocol.wire import MAX_FRAME


class Int16Framing(Int16StringReceiver):
    MAX_LENGTH = MAX_FRAME

    def stringReceived(self, string):
        self.frameReceived(string)

    def lengthLimitExceeded(self, length):
        self.frameTooLong()

    def sendFrame(self, frame: bytes) -> None:
        self.sendString(frame)


class LineFraming(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_FRAME

    def lineReceived(self, line):
        if line.endswith(b"\r"):
            line = line[:-1]
        self.frameReceived(line)

    def lineLengthExceeded(self, line):
        self.clearLineBuffer()
        self.frameTooLong()

    def sendFrame(self, frame: bytes) -> None:
        self.sendLine(frame)


FRAMINGS = {"int16": Int16Framing, "line": LineFraming}
