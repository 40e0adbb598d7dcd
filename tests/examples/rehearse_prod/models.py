"""One narrow table with many rows: events."""
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    n: Mapped[int] = mapped_column(sa.Integer)
    note: Mapped[str | None] = mapped_column(sa.Text)
    r: Mapped[float] = mapped_column(sa.Float, server_default=sa.text("random()"))
