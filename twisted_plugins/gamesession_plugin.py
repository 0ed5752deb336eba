from twisted.application.service import ServiceMaker

gamesession = ServiceMaker(
    "gamesession",
    "gamesession.server.tap",
    "Multiplayer session server: TCP login, NaCl-secured UDP bound to the session",
    "gamesession",
)
