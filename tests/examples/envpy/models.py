"""Models of a tiny blog: users and posts."""
import enum

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class PostStatus(enum.Enum):
    draft = 'draft'
    published = 'published'


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(255), unique=True)
    name: Mapped[str] = mapped_column(sa.Text)
    bio: Mapped[str | None] = mapped_column(sa.Text)


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", name="fk_posts_user_id"))
    title: Mapped[str] = mapped_column(sa.Text)
    score: Mapped[int | None] = mapped_column(sa.Integer)
    status: Mapped[PostStatus] = mapped_column(sa.Enum(PostStatus, name="post_status"), server_default="draft")
