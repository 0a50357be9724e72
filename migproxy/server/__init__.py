# Client side: the asyncio.Protocol of accepted client connections.
